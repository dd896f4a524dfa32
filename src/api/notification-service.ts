/**
 * smtpgate.notify.v1.NotificationService: platform services queue mails and
 * ask what became of them.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Instance } from "../domain/access.js";
import type { DomainDeps } from "../domain/deps.js";
import { DomainError } from "../domain/errors.js";
import type { MailState as DomainMailState, OutboxMail } from "../domain/outbox.js";
import { getMail, sendMail } from "../domain/send-mail.js";
import { MailState, type MailSchema, type NotificationService } from "../gen/smtpgate/notify/v1/notify_pb.js";
import { instanceKey, principalOf } from "./context.js";

const stateToProto: Record<DomainMailState, MailState> = {
  queued: MailState.QUEUED,
  sending: MailState.SENDING,
  sent: MailState.SENT,
  failed: MailState.FAILED,
};

/** A mail as the wire message. Bodies are not echoed back. */
export function mailToProto(m: OutboxMail): MessageInitShape<typeof MailSchema> {
  return {
    id: m.id,
    state: stateToProto[m.state],
    attempts: m.attempts,
    lastError: m.lastError,
    messageId: m.messageId,
    to: [...m.to],
    subject: m.subject,
    idempotencyKey: m.idempotencyKey,
    createTime: timestampFromDate(m.createdAt),
    sendTime: m.sentAt && timestampFromDate(m.sentAt),
    nextAttemptTime: m.state === "queued" && m.waitReason === "" ? timestampFromDate(m.nextAttemptAt) : undefined,
    providerId: m.providerId,
  };
}

function instanceOf(ctx: HandlerContext): Instance {
  const instance = ctx.values.get(instanceKey);
  if (!instance) throw new DomainError("internal", "AUTH-wire02", "request reached a handler without an instance");
  return instance;
}

/** Builds the service implementation over the domain. */
export function createNotificationService(deps: DomainDeps): ServiceImpl<typeof NotificationService> {
  return {
    async sendMail(req, ctx) {
      const result = await sendMail(deps, principalOf(ctx), instanceOf(ctx), {
        to: req.to,
        subject: req.subject,
        textBody: req.textBody,
        htmlBody: req.htmlBody,
        replyTo: req.replyTo,
        idempotencyKey: req.idempotencyKey,
      });
      return { mail: mailToProto(result.mail), created: result.created };
    },
    async getMail(req, ctx) {
      return { mail: mailToProto(await getMail(deps, principalOf(ctx), req.id)) };
    },
  };
}
