/**
 * Just enough DER to name a certificate by what its signature covers: the issuer Name's bytes (for
 * `serial:<issuer-hash>:<serial>` revocation entries). Node's X509Certificate parses certificates but does not
 * expose the issuer's encoding, and its text form is not a stable key.
 */

/** One DER element: tag byte, where its content starts and ends in the buffer, and where the element ends. */
export interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/** Reads the element at `offset`; throws on truncated input or an indefinite or over-long length. */
export function readTlv(der: Uint8Array, offset: number): Tlv {
  if (offset + 2 > der.length) throw new Error('DER: truncated element');
  const tag = der[offset] as number;
  const first = der[offset + 1] as number;
  let length = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const bytes = first & 0x7f;
    if (bytes === 0 || bytes > 4) throw new Error('DER: unsupported length');
    length = 0;
    for (let i = 0; i < bytes; i += 1) length = length * 256 + (der[contentStart + i] as number);
    contentStart += bytes;
  }
  const end = contentStart + length;
  if (end > der.length) throw new Error('DER: element runs past the end');
  return { tag, start: offset, contentStart, end };
}

/** The elements inside a constructed element, in order. */
export function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end;) {
    const child = readTlv(der, at);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** The DER bytes of a certificate's issuer Name (tbsCertificate: [0] version?, serial, signature, issuer). */
export function certificateIssuerDer(der: Uint8Array): Uint8Array {
  const tbs = children(der, readTlv(der, 0))[0];
  if (tbs === undefined) throw new Error('DER: no tbsCertificate');
  const fields = children(der, tbs);
  const skip = fields[0]?.tag === 0xa0 ? 1 : 0; // explicit [0] version, absent in v1 certificates
  const issuer = fields[skip + 2];
  if (issuer === undefined || issuer.tag !== 0x30) throw new Error('DER: no issuer Name');
  return der.subarray(issuer.start, issuer.end);
}
