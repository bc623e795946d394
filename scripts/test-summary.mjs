// Prints "N passed, N failed[, N skipped]" from vitest's JSON reporter output: CI reads this line, not
// vitest's own summary. A missing or unreadable report counts as one failure.
import { readFileSync } from 'node:fs';

/**
 * The fields of vitest's JSON report read here (all optional: a partial report still yields a line).
 * @typedef {{ status?: string, assertionResults?: unknown[] }} SuiteResult
 * @typedef {{ numPassedTests?: number, numFailedTests?: number, numPendingTests?: number,
 *   numTodoTests?: number, testResults?: SuiteResult[] }} Report
 */

const file = process.argv[2] ?? 'test-results.json';
/** @type {Report} */
let report;
try {
  /** @type {unknown} */
  const parsed = JSON.parse(readFileSync(file, 'utf8'));
  report = /** @type {Report} */ (parsed);
} catch (err) {
  console.error(
    `test-summary: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`,
  );
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
// A suite that fails to load has no tests of its own; count it so it cannot pass silently.
const failedSuites = (report.testResults ?? []).filter(
  (s) => s.status === 'failed' && (s.assertionResults ?? []).length === 0,
).length;
const failed = (report.numFailedTests ?? 0) + failedSuites;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
