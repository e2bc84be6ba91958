'use strict';
/**
 * The Temporal payload converter of the JS runtime: `json/plain` payloads exactly as the
 * Python side's pydantic data converter writes and reads them, with integers beyond 2^53 kept
 * exact (`bigint`) instead of rounded by `JSON.parse`. `undefined` and binary payloads are the
 * SDK's own converters.
 *
 * Loaded by the Temporal client through `dataConverter.payloadConverterPath`.
 */

const {
  BinaryPayloadConverter,
  CompositePayloadConverter,
  METADATA_ENCODING_KEY,
  UndefinedPayloadConverter,
  ValueError,
  encodingKeys,
  encodingTypes,
} = require('@temporalio/common');
const { parseJson, stringifyJson } = require('./json.cjs');

/** @typedef {import('@temporalio/common').Payload} Payload */

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** A `PayloadConverterWithEncoding` for `json/plain`. */
class LosslessJsonPayloadConverter {
  encodingType = encodingTypes.METADATA_ENCODING_JSON;

  /**
   * @param {unknown} value
   * @returns {Payload | undefined}
   */
  toPayload(value) {
    if (value === undefined) {
      return undefined;
    }
    let text;
    try {
      text = stringifyJson(value);
    } catch {
      return undefined;
    }
    return {
      metadata: { [METADATA_ENCODING_KEY]: encodingKeys.METADATA_ENCODING_JSON },
      data: encoder.encode(text),
    };
  }

  /**
   * @template T
   * @param {Payload} payload
   * @returns {T}
   */
  fromPayload(payload) {
    if (payload.data === undefined || payload.data === null) {
      throw new ValueError('Got payload with no data');
    }
    return /** @type {T} */ (parseJson(decoder.decode(payload.data)));
  }
}

const payloadConverter = new CompositePayloadConverter(
  new UndefinedPayloadConverter(),
  new BinaryPayloadConverter(),
  new LosslessJsonPayloadConverter(),
);

module.exports = { LosslessJsonPayloadConverter, payloadConverter };
