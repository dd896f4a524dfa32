/**
 * Object ids in ZITADEL's style: decimal strings of about 18 digits that
 * sort roughly by creation time.
 */
import { randomInt } from "node:crypto";

/** A new id: milliseconds since 2020 shifted left, with 22 random bits. */
export function newObjectId(now = Date.now()): string {
  const epoch = Date.UTC(2020, 0, 1);
  return ((BigInt(now - epoch) << 22n) | BigInt(randomInt(1 << 22))).toString();
}
