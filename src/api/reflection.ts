/**
 * gRPC server reflection, v1 and v1alpha: lists our services and hands out
 * the file descriptors that protoc-gen-es embedded in the generated code,
 * so grpcurl and buf curl need no local schema.
 */
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC status NOT_FOUND, as reflection's ErrorResponse carries it. */
const notFound = 5;
const unimplemented = 12;

/** Files of the served services and everything they import, by name and by symbol. */
export class DescriptorIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly bySymbol = new Map<string, DescFile>();

  constructor(readonly services: readonly DescService[]) {
    for (const service of services) this.addFile(service.file);
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.name + ".proto")) return;
    this.files.set(file.name + ".proto", file);
    for (const dep of file.dependencies) this.addFile(dep);
    const symbols = [...file.messages, ...file.enums, ...file.services].map((d) => d.typeName);
    for (const message of file.messages) symbols.push(...message.nestedMessages.map((m) => m.typeName), ...message.nestedEnums.map((e) => e.typeName));
    for (const service of file.services) symbols.push(...service.methods.map((m) => `${service.typeName}.${m.name}`));
    for (const symbol of symbols) this.bySymbol.set(symbol, file);
  }

  /** The serialized descriptor of a file and of every file it imports. */
  withDependencies(file: DescFile): Uint8Array[] {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return out;
  }

  byFilename(name: string): DescFile | undefined {
    return this.files.get(name);
  }

  bySymbolName(symbol: string): DescFile | undefined {
    return this.bySymbol.get(symbol.replace(/^\./, ""));
  }
}

type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;

/** The response body for one request, shared by both API versions. */
function answer(index: DescriptorIndex, req: Request) {
  const r = req.messageRequest;
  const files = (file: DescFile | undefined, what: string) =>
    file
      ? { case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: index.withDependencies(file) } }
      : { case: "errorResponse" as const, value: { errorCode: notFound, errorMessage: `${what} not found` } };
  switch (r.case) {
    case "listServices":
      return { case: "listServicesResponse" as const, value: { service: index.services.map((s) => ({ name: s.typeName })) } };
    case "fileByFilename":
      return files(index.byFilename(r.value), `file ${r.value}`);
    case "fileContainingSymbol":
      return files(index.bySymbolName(r.value), `symbol ${r.value}`);
    case "allExtensionNumbersOfType":
      return { case: "allExtensionNumbersResponse" as const, value: { baseTypeName: r.value, extensionNumber: [] } };
    default:
      return { case: "errorResponse" as const, value: { errorCode: unimplemented, errorMessage: "request not supported" } };
  }
}

/** grpc.reflection.v1.ServerReflection over `index`. */
export function createReflectionV1(index: DescriptorIndex): ServiceImpl<typeof v1.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req) };
      }
    },
  };
}

/** grpc.reflection.v1alpha.ServerReflection over `index`, for older clients. */
export function createReflectionV1alpha(index: DescriptorIndex): ServiceImpl<typeof v1alpha.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield { validHost: req.host, originalRequest: req, messageResponse: answer(index, req) };
      }
    },
  };
}
