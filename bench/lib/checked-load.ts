/**
 * Load runs whose answers are known to be successes. h2load counts any HTTP
 * 2xx as a success, and a gRPC error is HTTP 200; so before measuring, a
 * target is probed once (grpc-status read from the trailers) and loaded once
 * with a counted run, where h2load's byte count is exact: an error answer
 * would change the body bytes per request. Measured runs must then have no
 * failed and no non-2xx request.
 */
import { runLoad, type LoadResult, type LoadSpec } from "./h2load.js";
import { probe } from "./probe.js";

/** Requests of the counted run that checks body sizes under load. */
const countedRequests = 2000;

/**
 * Probes `spec`'s request and runs it `countedRequests` times; throws unless
 * every answer is HTTP 200 (and grpc-status 0 when `hasGrpcStatus`) with the
 * probed body size. Returns that size in bytes.
 */
export async function verifyTarget(name: string, spec: LoadSpec, hasGrpcStatus: boolean): Promise<number> {
  const answer = await probe({ url: spec.url, isHttp1: spec.isHttp1, headers: spec.headers, body: spec.body });
  const isOk = answer.httpStatus === 200 && (!hasGrpcStatus || answer.grpcStatus === "0");
  if (!isOk) {
    const text = answer.body.toString("latin1").slice(0, 300);
    throw new Error(`${name} answered HTTP ${answer.httpStatus}, grpc-status ${answer.grpcStatus}: ${text}`);
  }
  const counted = await runLoad({ ...spec, requests: countedRequests });
  assertClean(name, counted);
  if (Math.abs(counted.bodyBytesPerRequest - answer.body.length) > 0.5) {
    throw new Error(`${name}: ${counted.bodyBytesPerRequest.toFixed(1)} body bytes per request under load, ${answer.body.length} when probed`);
  }
  return answer.body.length;
}

/** Throws when any request of `result` failed or got a status outside 2xx. */
export function assertClean(name: string, result: LoadResult): void {
  if (result.failed > 0 || result.non2xx > 0) {
    throw new Error(`${name}: ${result.failed} failed and ${result.non2xx} non-2xx requests under load`);
  }
}
