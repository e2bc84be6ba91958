/**
 * Python's `json.dumps(value, sort_keys=True, separators=(",", ":"))` of what the Python side
 * decodes from the JSON this runtime sends: the canonical encoding the workflows hash requests
 * with (`workflows.models.request_hash`). The client needs the same hash to answer a repeated
 * request after the hold's workflow has ended, exactly as the Python client does.
 *
 * What Python decodes, and so what is written here:
 * - a number JS writes without a fraction or exponent is a Python `int` (digits as they are); a
 *   bigint too; any other number is a `float`, written as Python's `repr` writes it (`1e-07`,
 *   `1e+21`, `0.5`, `100.0` never occurs: JS writes integral doubles below 1e21 as integers);
 * - strings are escaped as with `ensure_ascii=True`: everything outside ' '..'~' as `\uXXXX`
 *   (lower-case hex, UTF-16 code units: exactly the surrogate pairs Python writes);
 * - object keys are sorted by code point, as Python sorts `str`.
 */

/**
 * @param {string} text
 */
function pythonString(text) {
  let out = '"';
  for (let index = 0; index < text.length; index += 1) {
    const unit = text.charCodeAt(index);
    const character = text[index];
    if (character === '"') out += '\\"';
    else if (character === '\\') out += '\\\\';
    else if (character === '\n') out += '\\n';
    else if (character === '\r') out += '\\r';
    else if (character === '\t') out += '\\t';
    else if (character === '\b') out += '\\b';
    else if (character === '\f') out += '\\f';
    else if (unit < 0x20 || unit > 0x7e) out += `\\u${unit.toString(16).padStart(4, '0')}`;
    else out += character;
  }
  return `${out}"`;
}

/**
 * `repr(float)`: the shortest digits that read back as the same double; positional notation
 * for decimal exponents -4..15 (always with a fraction), scientific otherwise (`1.5e+300`).
 * @param {number} value
 */
export function pythonFloatRepr(value) {
  if (value === 0) {
    return Object.is(value, -0) ? '-0.0' : '0.0';
  }
  const sign = value < 0 ? '-' : '';
  const [mantissa, exponentText] = Math.abs(value).toExponential().split('e');
  const exponent = Number(exponentText);
  const digits = mantissa.replace('.', '');
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
    }
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
    const fraction = digits.slice(exponent + 1) || '0';
    return `${sign}${whole}.${fraction}`;
  }
  const shownMantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const exponentSign = exponent < 0 ? '-' : '+';
  return `${sign}${shownMantissa}e${exponentSign}${String(Math.abs(exponent)).padStart(2, '0')}`;
}

/**
 * @param {number} value
 */
function pythonNumber(value) {
  // JSON.stringify writes an integral double below 1e21 as digits: Python reads an int.
  const written = JSON.stringify(value);
  if (/^-?[0-9]+$/.test(written)) {
    return written === '-0' ? '0' : written;
  }
  return pythonFloatRepr(value);
}

/**
 * Code point order (Python's `str` order), not UTF-16 code unit order.
 * @param {string} left
 * @param {string} right
 */
export function compareCodePoints(left, right) {
  const a = [...left];
  const b = [...right];
  for (let index = 0; index < Math.min(a.length, b.length); index += 1) {
    const difference = /** @type {number} */ (a[index].codePointAt(0)) - /** @type {number} */ (b[index].codePointAt(0));
    if (difference !== 0) {
      return difference;
    }
  }
  return a.length - b.length;
}

/**
 * The canonical encoding of a JSON value (see the module comment).
 * @param {unknown} value
 * @returns {string}
 */
export function pythonJsonDumps(value) {
  if (value === null || value === undefined) {
    return 'null';
  }
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (typeof value === 'string') return pythonString(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return pythonNumber(value);
  if (Array.isArray(value)) {
    return `[${value.map((item) => pythonJsonDumps(item)).join(',')}]`;
  }
  if (typeof value === 'object') {
    const entries = Object.entries(value).filter(([, item]) => item !== undefined);
    entries.sort(([left], [right]) => compareCodePoints(left, right));
    return `{${entries.map(([key, item]) => `${pythonString(key)}:${pythonJsonDumps(item)}`).join(',')}}`;
  }
  throw new TypeError(`no JSON form for ${typeof value}`);
}
