/**
 * google.api.http path templates: "/smtp/{id}/password", with literal
 * segments, single-segment variables ("{id}", "{id=*}") and a trailing
 * multi-segment variable ("{name=**}"). Verbs (":verb") are not used by our
 * protos and are not supported.
 */

/** One segment of a template. */
export type Segment =
  | { readonly kind: "literal"; readonly value: string }
  | { readonly kind: "variable"; readonly field: string; readonly rest: boolean };

/** A parsed template. */
export interface PathTemplate {
  readonly source: string;
  readonly segments: readonly Segment[];
}

/**
 * Parses a template. Throws Error for syntax this module does not support,
 * at startup, so a new proto option cannot fail quietly at request time.
 */
export function parsePathTemplate(source: string): PathTemplate {
  if (!source.startsWith("/")) throw new Error(`http path template must start with "/": ${source}`);
  const segments = source
    .slice(1)
    .split("/")
    .map((part, index, all): Segment => {
      const variable = /^\{([a-z_][a-z0-9_.]*)(?:=(\*|\*\*))?\}$/.exec(part);
      if (!variable) {
        if (/[{}*:]/.test(part) || part === "") throw new Error(`unsupported http path template: ${source}`);
        return { kind: "literal", value: part };
      }
      const rest = variable[2] === "**";
      if (rest && index !== all.length - 1) throw new Error(`"**" must be last in http path template: ${source}`);
      return { kind: "variable", field: variable[1], rest };
    });
  return { source, segments };
}

/**
 * Matches a request path (already split at "/", percent-decoded per segment)
 * against a template. Returns the variables, or undefined.
 */
export function matchPath(template: PathTemplate, parts: readonly string[]): Record<string, string> | undefined {
  const vars: Record<string, string> = {};
  const { segments } = template;
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    if (segment.kind === "literal") {
      if (parts[i] !== segment.value) return undefined;
    } else if (segment.rest) {
      if (i >= parts.length) return undefined;
      vars[segment.field] = parts.slice(i).join("/");
      return vars;
    } else {
      if (parts[i] === undefined || parts[i] === "") return undefined;
      vars[segment.field] = parts[i];
    }
  }
  return parts.length === segments.length ? vars : undefined;
}

/**
 * Orders two templates that match the same path: negative when `a` is more
 * specific. A literal beats a variable at the first segment where they
 * differ, so "PUT /smtp/password" wins over "PUT /smtp/{id}".
 */
export function compareSpecificity(a: PathTemplate, b: PathTemplate): number {
  const n = Math.max(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const rank = (s: Segment | undefined) => (s === undefined ? 3 : s.kind === "literal" ? 0 : s.rest ? 2 : 1);
    const diff = rank(a.segments[i]) - rank(b.segments[i]);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** Splits a URL path into percent-decoded segments; undefined when malformed. */
export function splitPath(path: string): string[] | undefined {
  try {
    return path.slice(1).split("/").map(decodeURIComponent);
  } catch {
    return undefined;
  }
}
