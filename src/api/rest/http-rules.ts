/**
 * Reads the google.api.http options of a service's methods from the
 * generated descriptors, so the REST routes follow the protos and are never
 * a second, hand-written table.
 */
import { getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { http, } from "../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../gen/google/api/http_pb.js";
import { parsePathTemplate, type PathTemplate } from "./path-template.js";

/** One REST binding of one RPC. */
export interface RestRoute {
  readonly verb: string;
  readonly template: PathTemplate;
  /** "*" to read the whole request from the body, "" for none. */
  readonly body: string;
  readonly method: DescMethod;
}

function toRoute(rule: HttpRule, prefix: string, method: DescMethod): RestRoute | undefined {
  const { case: verb, value } = rule.pattern;
  if (verb === undefined) return undefined;
  if (verb === "custom") throw new Error(`custom http verbs are not supported (${method.name})`);
  if (rule.body !== "" && rule.body !== "*") {
    throw new Error(`http body must be "*" or empty, got "${rule.body}" (${method.name})`);
  }
  return { verb: verb.toUpperCase(), template: parsePathTemplate(prefix + value), body: rule.body, method };
}

/**
 * The REST routes of `service`, each path under `prefix` (e.g. "/admin/v1").
 * Methods without the option get no route. Throws at startup for options
 * the transcoder does not support.
 */
export function restRoutesOf(service: DescService, prefix: string): RestRoute[] {
  const routes: RestRoute[] = [];
  for (const method of service.methods) {
    if (!hasOption(method, http)) continue;
    const rule = getOption(method, http);
    for (const r of [rule, ...rule.additionalBindings]) {
      const route = toRoute(r, prefix, method);
      if (route) routes.push(route);
    }
  }
  return routes;
}
