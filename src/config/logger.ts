/**
 * The process's one structured JSON logger (pino). Redaction of password,
 * token and authorization fields is a safety net: code logs chosen fields,
 * never whole objects.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from "pino";

/** Field paths blanked in every log line, whatever code logs them. */
export const redactedPaths = [
  "password",
  "*.password",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
];

/** Creates the logger, writing JSON lines to `destination` (stdout if absent). */
export function createLogger(level: string, destination?: DestinationStream): PinoLogger {
  return pino(
    {
      level,
      base: { service: "smtpgate" },
      redact: { paths: redactedPaths, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
