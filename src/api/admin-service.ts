/**
 * zitadel.admin.v1.AdminService: the SMTP-config and email-provider RPCs.
 * Each handler unpacks the request, calls one domain function, packs the
 * reply. Both families are views of the same stored providers.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { DomainDeps } from "../domain/deps.js";
import { DomainError } from "../domain/errors.js";
import {
  activateProvider,
  addProvider,
  changeSmtpPassword,
  deactivateProvider,
  refuseHttpProvider,
  removeProvider,
  updateProvider,
} from "../domain/provider-commands.js";
import { getActiveProvider, getProvider, listProviders } from "../domain/provider-queries.js";
import { testProviderById, testSettings } from "../domain/test-mail.js";
import type { AdminService } from "../gen/zitadel/admin/v1/admin_pb.js";
import { principalOf } from "./context.js";
import {
  detailsToProto,
  listDetailsToProto,
  providerToEmailProvider,
  providerToSmtpConfig,
  settingsFromProto,
} from "./convert.js";

type Impl = ServiceImpl<typeof AdminService>;

const defaultQuery = { offset: 0n, limit: 0, asc: false };

/** Builds the service implementation over the domain. */
export function createAdminService(deps: DomainDeps): Impl {
  return {
    healthz: () => ({}),
    ...smtpConfigHandlers(deps),
    ...emailProviderHandlers(deps),
  };
}

function smtpConfigHandlers(deps: DomainDeps) {
  return {
    async getSMTPConfig(_req, ctx) {
      return { smtpConfig: providerToSmtpConfig(await getActiveProvider(deps, principalOf(ctx))) };
    },
    async getSMTPConfigById(req, ctx) {
      return { smtpConfig: providerToSmtpConfig(await getProvider(deps, principalOf(ctx), req.id)) };
    },
    async listSMTPConfigs(req, ctx) {
      const list = await listProviders(deps, principalOf(ctx), req.query ?? defaultQuery);
      return { details: listDetailsToProto(list), result: list.providers.map(providerToSmtpConfig) };
    },
    async addSMTPConfig(req, ctx) {
      const added = await addProvider(deps, principalOf(ctx), { ...settingsFromProto(req), password: req.password });
      return { id: added.id, details: detailsToProto(added.details) };
    },
    async updateSMTPConfig(req, ctx) {
      const input = { ...settingsFromProto(req), id: req.id, password: req.password };
      return { details: detailsToProto(await updateProvider(deps, principalOf(ctx), input)) };
    },
    async updateSMTPConfigPassword(req, ctx) {
      const input = { id: req.id, password: req.password };
      return { details: detailsToProto(await changeSmtpPassword(deps, principalOf(ctx), input)) };
    },
    async activateSMTPConfig(req, ctx) {
      return { details: detailsToProto(await activateProvider(deps, principalOf(ctx), req.id)) };
    },
    async deactivateSMTPConfig(req, ctx) {
      return { details: detailsToProto(await deactivateProvider(deps, principalOf(ctx), req.id)) };
    },
    async removeSMTPConfig(req, ctx) {
      return { details: detailsToProto(await removeProvider(deps, principalOf(ctx), req.id)) };
    },
    async testSMTPConfigById(req, ctx) {
      await testProviderById(deps, principalOf(ctx), { id: req.id, receiverAddress: req.receiverAddress }, ctx.signal);
      return {};
    },
    async testSMTPConfig(req, ctx) {
      await testSettings(deps, principalOf(ctx), { ...req }, ctx.signal);
      return {};
    },
  } satisfies Partial<Impl>;
}

function emailProviderHandlers(deps: DomainDeps) {
  return {
    async listEmailProviders(req, ctx) {
      const list = await listProviders(deps, principalOf(ctx), req.query ?? defaultQuery);
      return { details: listDetailsToProto(list), result: list.providers.map(providerToEmailProvider) };
    },
    async getEmailProvider(_req, ctx) {
      return { config: providerToEmailProvider(await getActiveProvider(deps, principalOf(ctx))) };
    },
    async getEmailProviderById(req, ctx) {
      return { config: providerToEmailProvider(await getProvider(deps, principalOf(ctx), req.id)) };
    },
    async addEmailProviderSMTP(req, ctx) {
      const added = await addProvider(deps, principalOf(ctx), { ...settingsFromProto(req), password: req.password });
      return { id: added.id, details: detailsToProto(added.details) };
    },
    async updateEmailProviderSMTP(req, ctx) {
      const input = { ...settingsFromProto(req), id: req.id, password: req.password };
      return { details: detailsToProto(await updateProvider(deps, principalOf(ctx), input)) };
    },
    async updateEmailProviderSMTPPassword(req, ctx) {
      if (req.id === "") throw new DomainError("invalid", "SMTP-len01", "id must be 1 to 100 characters long");
      const input = { id: req.id, password: req.password };
      return { details: detailsToProto(await changeSmtpPassword(deps, principalOf(ctx), input)) };
    },
    addEmailProviderHTTP: (_req, ctx) => refuseHttpProvider(principalOf(ctx)),
    updateEmailProviderHTTP: (_req, ctx) => refuseHttpProvider(principalOf(ctx)),
    async activateEmailProvider(req, ctx) {
      return { details: detailsToProto(await activateProvider(deps, principalOf(ctx), req.id)) };
    },
    async deactivateEmailProvider(req, ctx) {
      return { details: detailsToProto(await deactivateProvider(deps, principalOf(ctx), req.id)) };
    },
    async removeEmailProvider(req, ctx) {
      return { details: detailsToProto(await removeProvider(deps, principalOf(ctx), req.id)) };
    },
    async testEmailProviderSMTPById(req, ctx) {
      await testProviderById(deps, principalOf(ctx), { id: req.id, receiverAddress: req.receiverAddress }, ctx.signal);
      return {};
    },
    async testEmailProviderSMTP(req, ctx) {
      await testSettings(deps, principalOf(ctx), { ...req }, ctx.signal);
      return {};
    },
  } satisfies Partial<Impl>;
}
