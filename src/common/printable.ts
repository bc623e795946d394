/**
 * C0 and C1 controls and DEL (newline and ESC among them; a terminal may take U+009B as CSI), the line and
 * paragraph separators, and the bidirectional marks, embeddings, overrides and isolates (the edge's set): text
 * holding one does not display as its characters (a `prfleet watch` line's actor shown reversed, a quote unlike
 * what was sent). {@link printable} shows them as '.', errors' quotes escape them.
 */
export const UNPRINTABLE =
  /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with its control characters shown as '.', as a key layout shows unprintable bytes: for words a device
 * or an agent chose (INQUIRY text, a sense's description) that are shown on one line as they are.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, '.');
}

/** True when `text` has a control character {@link printable} would replace. */
export function hasControl(text: string): boolean {
  return text.search(UNPRINTABLE) >= 0;
}
