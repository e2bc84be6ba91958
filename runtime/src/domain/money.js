/**
 * Amounts: decimal text in, decimal text out, never a JS number.
 *
 * The grammar is the ledger's one grammar (`ledger_db/money.py`, `AMOUNT_GRAMMAR`): ASCII digits
 * with an optional `.` and fraction digits, at most `amount_text_length_max` characters, no
 * sign, exponent, whitespace, underscore or other digits. This module only refuses what the
 * ledger would refuse whatever the currency (wrong type, wrong grammar, zero) before anything
 * is sent; the currency's precision and range are the ledger's to check. Arithmetic is BigInt.
 */

import { CONTRACT, LIMITS, fullMatch } from './contract.js';
import { LedgerError } from './errors.js';

const DECIMAL_TEXT = fullMatch(CONTRACT.patterns.amount);

/**
 * An amount as an error message shows it: never megabytes of text.
 * @param {unknown} amount
 */
function shown(amount) {
  const text = typeof amount === 'string' ? amount : String(amount);
  const cap = LIMITS.amount_text_length_max;
  return JSON.stringify(text.length <= cap ? text : text.slice(0, cap)) + (text.length > cap ? '...' : '');
}

/**
 * The exact value of decimal text as `[coefficient, scale]` (`"12.50"` is `[1250n, 2]`).
 * @param {unknown} amount
 * @param {string} field
 * @returns {[bigint, number]}
 */
function exactDecimal(amount, field) {
  if (typeof amount !== 'string') {
    const kind = amount === null ? 'null' : typeof amount;
    throw new LedgerError(
      'invalid_amount',
      `${field} must be decimal text such as "12.50", not ${kind} (amounts are never JS numbers)`,
      { details: { field } },
    );
  }
  if (amount.length > LIMITS.amount_text_length_max || !DECIMAL_TEXT.test(amount)) {
    throw new LedgerError(
      'invalid_amount',
      `${field} ${shown(amount)} is not decimal text (${CONTRACT.amount_grammar})`,
      { details: { field, amount: amount.slice(0, LIMITS.amount_text_length_max) } },
    );
  }
  const [whole, fraction = ''] = amount.split('.');
  return [BigInt(whole + fraction), fraction.length];
}

/**
 * Checks an amount against the ledger's grammar and returns its canonical spelling ("1.50" and
 * "1.5" are both "1.5"), as Python's `canonical_decimal` does: that is what is sent and hashed.
 * Refuses (`invalid_amount`) a number, a bigint, anything outside the grammar, and zero.
 * @param {unknown} amount
 * @param {string} [field]
 * @returns {string}
 */
export function checkAmount(amount, field = 'amount') {
  let [coefficient, scale] = exactDecimal(amount, field);
  if (coefficient === 0n) {
    throw new LedgerError('invalid_amount', `${field} ${shown(amount)} must be greater than zero`, {
      details: { field, amount },
    });
  }
  while (scale > 0 && coefficient % 10n === 0n) {
    coefficient /= 10n;
    scale -= 1;
  }
  return formatMinor(coefficient, scale);
}

/**
 * Python's `workflows.models.canonical_amount`: the canonical spelling, or the text as it is
 * when it is outside the grammar (so that hashing a request never fails).
 * @param {string | null} amount
 * @returns {string | null}
 */
export function canonicalAmount(amount) {
  if (amount === null) {
    return null;
  }
  try {
    const [coefficient, scale] = exactDecimal(amount, 'amount');
    let value = coefficient;
    let decimals = scale;
    while (decimals > 0 && value % 10n === 0n) {
      value /= 10n;
      decimals -= 1;
    }
    return formatMinor(value, decimals);
  } catch {
    return amount;
  }
}

/**
 * Integer minor units (any sign) as decimal text with exactly `exponent` decimals.
 * @param {number | bigint} amountMinor
 * @param {number} exponent
 * @returns {string}
 */
export function formatMinor(amountMinor, exponent) {
  if (typeof amountMinor === 'number' && !Number.isSafeInteger(amountMinor)) {
    throw new TypeError(`minor units must be an exact integer, not ${amountMinor}`);
  }
  const value = BigInt(amountMinor);
  const sign = value < 0n ? '-' : '';
  const digits = (value < 0n ? -value : value).toString();
  if (exponent === 0) {
    return sign + digits;
  }
  const padded = digits.padStart(exponent + 1, '0');
  return `${sign}${padded.slice(0, -exponent)}.${padded.slice(-exponent)}`;
}

/**
 * The number of decimals of a currency, read off an amount the ledger wrote in it (the ledger
 * always writes exactly the currency's decimals: "40.00" is USD's 2, "3" is CREDIT's 0).
 * @param {string} amountText
 */
export function decimalsOf(amountText) {
  const point = amountText.indexOf('.');
  return point < 0 ? 0 : amountText.length - point - 1;
}
