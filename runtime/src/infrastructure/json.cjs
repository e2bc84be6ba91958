'use strict';
/**
 * JSON without losing integers. The ledger's records carry 64-bit integers (minor units,
 * sequences up to 2^63 - 1) and meta may hold any integer; `JSON.parse` would turn every one
 * above 2^53 into a nearby double. Here an integer that a number holds exactly is a `number`,
 * a larger one a `bigint`; every other number is a double, as Python's `json` reads it.
 *
 * CommonJS on purpose: the Temporal client loads its payload converter with `require()`.
 */

const { parse, stringify, isInteger } = require('lossless-json');

/**
 * @param {string} text
 * @returns {number | bigint}
 */
function parseNumber(text) {
  if (isInteger(text)) {
    const value = Number(text);
    return Number.isSafeInteger(value) ? value : BigInt(text);
  }
  return Number.parseFloat(text);
}

/**
 * Parses JSON text; integers beyond 2^53 come back as `bigint`.
 * @param {string} text
 * @returns {unknown}
 */
function parseJson(text) {
  return parse(text, null, { parseNumber });
}

/**
 * JSON text of a value; `bigint` is written as its digits.
 * @param {unknown} value
 * @returns {string}
 */
function stringifyJson(value) {
  const text = stringify(value);
  if (text === undefined) {
    throw new TypeError('value has no JSON form');
  }
  return text;
}

module.exports = { parseJson, stringifyJson };
