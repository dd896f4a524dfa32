/**
 * The permission each RPC requires, checked at the edge before the request
 * body is read (WIRE.md's order: instance, token, permission, input). The
 * domain checks again; this table only makes the refusal cheap and early.
 * An RPC missing here is refused, so a new RPC cannot be open by accident.
 */
import type { Permission } from "../domain/access.js";

/** "public": no instance, no token. Otherwise the permission needed. */
export type Requirement = "public" | Permission;

/** Requirement per RPC, by "<service>/<method>" or by the proto's method name. */
export const requirementByMethod: Readonly<Record<string, Requirement>> = {
  Healthz: "public",
  GetSMTPConfig: "iam.read",
  GetSMTPConfigById: "iam.read",
  ListSMTPConfigs: "iam.read",
  AddSMTPConfig: "iam.write",
  UpdateSMTPConfig: "iam.write",
  UpdateSMTPConfigPassword: "iam.write",
  ActivateSMTPConfig: "iam.write",
  DeactivateSMTPConfig: "iam.write",
  RemoveSMTPConfig: "iam.write",
  TestSMTPConfigById: "iam.write",
  TestSMTPConfig: "iam.write",
  ListEmailProviders: "iam.read",
  GetEmailProvider: "iam.read",
  GetEmailProviderById: "iam.read",
  AddEmailProviderSMTP: "iam.write",
  UpdateEmailProviderSMTP: "iam.write",
  UpdateEmailProviderSMTPPassword: "iam.write",
  ActivateEmailProvider: "iam.write",
  DeactivateEmailProvider: "iam.write",
  RemoveEmailProvider: "iam.write",
  TestEmailProviderSMTPById: "iam.write",
  TestEmailProviderSMTP: "iam.write",
  // Not offered (webhook delivery); answered Unimplemented after the permission check.
  AddEmailProviderHTTP: "iam.write",
  UpdateEmailProviderHTTP: "iam.write",
  SendMail: "notify.send",
  GetMail: "notify.send",
  // Infrastructure services, by full name: probes and tools call them
  // without a token, and their method names are too generic to share a
  // namespace with ours.
  "grpc.health.v1.Health/Check": "public",
  "grpc.health.v1.Health/Watch": "public",
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "public",
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "public",
};
