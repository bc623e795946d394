/**
 * Device allow-list globs, one meaning for the agent's `--allow` and a certificate's `prfleet:allow:` URIs:
 * `*` any run of characters but `/`, `?` one character but `/`, `[…]` a class, everything else literal. They
 * match normalized paths only, so that `/dev/sg1/../sg0` never passes for `/dev/sg1*`.
 */

/** Converts a device-node glob into an anchored RegExp (see the module doc). */
export function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 1);
      if (close === -1) out += '\\[';
      else {
        out += `[${glob.slice(i + 1, close).replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else out += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** True when `path` has no `.` or `..` segment, no empty segment (`//`) and no trailing `/`. */
export function isNormalPath(path: string): boolean {
  if (path === '' || path.includes('\0')) return false;
  const segments = path.split('/');
  return segments.every((s, i) => (s !== '' || i === 0) && s !== '.' && s !== '..');
}

/** True when `path` is normalized and matches one of `patterns` (an empty list allows every normal path). */
export function allowedPath(patterns: readonly RegExp[], path: string): boolean {
  return isNormalPath(path) && (patterns.length === 0 || patterns.some((p) => p.test(path)));
}
