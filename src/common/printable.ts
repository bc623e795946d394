// C0 and C1 controls and DEL (newline and ESC among them).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * `text` with its control characters shown as '.', as a key layout shows unprintable bytes: for words a device
 * or an agent chose (INQUIRY text, a sense's description) that are shown on one line as they are.
 */
export function printable(text: string): string {
  return text.replace(CONTROL, '.');
}

/** True when `text` has a control character {@link printable} would replace. */
export function hasControl(text: string): boolean {
  return text.search(CONTROL) >= 0;
}
