/**
 * Waiting in integration tests: for a condition, bounded in time, never a fixed sleep where a
 * condition can be checked.
 */

/**
 * @param {number} ms
 */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves with `check()`'s first truthy answer; rejects with `what` after `timeoutMs`.
 * @template T
 * @param {() => T | Promise<T>} check
 * @param {string} what
 * @param {number} [timeoutMs]
 * @returns {Promise<NonNullable<T>>}
 */
export async function eventually(check, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await check();
    if (answer) {
      return /** @type {NonNullable<T>} */ (answer);
    }
    if (Date.now() > deadline) {
      throw new Error(`not within ${timeoutMs} ms: ${what}`);
    }
    await sleep(50);
  }
}

let counter = 0;

/**
 * A key no other test uses.
 * @param {string} prefix
 */
export function unique(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}
