/**
 * Converters between domain values and the generated wire messages.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ObjectDetails } from "../domain/deps.js";
import type { ProviderList } from "../domain/provider-queries.js";
import type { ProviderSettings, SmtpProvider } from "../domain/provider.js";
import {
  EmailProviderState,
  SMTPConfigState,
  type EmailProviderSchema,
  type SMTPConfigSchema,
} from "../gen/zitadel/settings/v1/smtp_pb.js";
import type { ListDetailsSchema, ObjectDetailsSchema } from "../gen/zitadel/v1/object_pb.js";

/** ObjectDetails of the domain as the wire message. */
export function detailsToProto(d: ObjectDetails): MessageInitShape<typeof ObjectDetailsSchema> {
  return {
    sequence: d.sequence,
    creationDate: timestampFromDate(d.creationDate),
    changeDate: timestampFromDate(d.changeDate),
    resourceOwner: d.resourceOwner,
  };
}

function providerDetails(p: SmtpProvider): ObjectDetails {
  return { sequence: p.sequence, creationDate: p.creationDate, changeDate: p.changeDate, resourceOwner: p.instanceId };
}

/** A provider as zitadel.settings.v1.SMTPConfig. Never carries the password. */
export function providerToSmtpConfig(p: SmtpProvider): MessageInitShape<typeof SMTPConfigSchema> {
  return {
    details: detailsToProto(providerDetails(p)),
    id: p.id,
    description: p.description,
    senderAddress: p.senderAddress,
    senderName: p.senderName,
    replyToAddress: p.replyToAddress,
    tls: p.tls,
    host: p.host,
    user: p.user,
    state: p.isActive ? SMTPConfigState.SMTP_CONFIG_ACTIVE : SMTPConfigState.SMTP_CONFIG_INACTIVE,
  };
}

/** A provider as zitadel.settings.v1.EmailProvider with SMTP settings. */
export function providerToEmailProvider(p: SmtpProvider): MessageInitShape<typeof EmailProviderSchema> {
  return {
    details: detailsToProto(providerDetails(p)),
    id: p.id,
    description: p.description,
    state: p.isActive ? EmailProviderState.EMAIL_PROVIDER_ACTIVE : EmailProviderState.EMAIL_PROVIDER_INACTIVE,
    config: {
      case: "smtp",
      value: {
        senderAddress: p.senderAddress,
        senderName: p.senderName,
        replyToAddress: p.replyToAddress,
        tls: p.tls,
        host: p.host,
        user: p.user,
      },
    },
  };
}

/** ListDetails of a provider page. */
export function listDetailsToProto(list: ProviderList): MessageInitShape<typeof ListDetailsSchema> {
  return {
    totalResult: BigInt(list.total),
    processedSequence: list.processedSequence,
    viewTimestamp: timestampFromDate(list.viewTimestamp),
  };
}

/** The settings fields that add and update requests of both families share. */
export interface SettingsMessage {
  readonly senderAddress: string;
  readonly senderName: string;
  readonly replyToAddress: string;
  readonly description: string;
  readonly tls: boolean;
  readonly host: string;
  readonly user: string;
}

/** Provider settings from a request message. */
export function settingsFromProto(m: SettingsMessage): ProviderSettings {
  return {
    senderAddress: m.senderAddress,
    senderName: m.senderName,
    replyToAddress: m.replyToAddress,
    description: m.description,
    tls: m.tls,
    host: m.host,
    user: m.user,
  };
}
