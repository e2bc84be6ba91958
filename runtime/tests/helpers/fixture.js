/**
 * The parity table generated from the Python code (`runtime/scripts/generate_contract.py`),
 * read losslessly (its integers beyond 2^53 stay exact, as the runtime reads the ledger's).
 */

import { readFileSync } from 'node:fs';

import json from '../../src/infrastructure/json.cjs';

/** @type {Record<string, any>} */
export const PARITY = /** @type {Record<string, any>} */ (
  json.parseJson(readFileSync(new URL('../fixtures/python-parity.json', import.meta.url), 'utf8'))
);
