// Push an order's shipment, delivery and cancellation back to healthcommerce as Standard Webhooks events
// (POST $HC_STATUS_WEBHOOK_URL, normally https://<app>/webhooks/medusa/), signed with $HC_STATUS_WEBHOOK_SECRET
// (whsec_<base64>, the app's MEDUSA_STATUS_SECRET). Only orders healthcommerce created (their metadata holds
// its order reference) are reported, and the body holds that reference, Medusa's order id and the tracking
// number and URL of the first shipping label: nothing else about the patient.
//
// Delivery is best effort with three tries; the app's daily reconciliation (GET /admin/orders/{id}) catches
// anything lost. The webhook-id is stable per event and fulfillment, so the app deduplicates retries.
// Sources: Medusa docs "Events and Subscribers" (SubscriberArgs, SubscriberConfig, Query), Medusa's
// FulfillmentWorkflowEvents (shipment.created and delivery.created carry the fulfillment id) and
// OrderWorkflowEvents (order.canceled carries the order id); the Standard Webhooks specification
// (webhook-id, webhook-timestamp, webhook-signature = v1,base64(HMAC-SHA256(id.timestamp.body))).
import crypto from "node:crypto"
import type { SubscriberArgs, SubscriberConfig } from "@medusajs/framework"
import { ContainerRegistrationKeys } from "@medusajs/framework/utils"

// Must match healthcommerce/fulfillment/backends/medusa/client.py REFERENCE_KEY.
const REFERENCE_KEY = "healthcommerce_reference"

const EVENT_TYPES: Record<string, string> = {
  "shipment.created": "order.shipped",
  "delivery.created": "order.delivered",
  "order.canceled": "order.cancelled",
}

type Label = { tracking_number?: string | null; tracking_url?: string | null }
type OrderRow = { id: string; metadata?: Record<string, unknown> | null }

function signature(secret: string, id: string, timestamp: string, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64")
  const digest = crypto.createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")
  return `v1,${digest}`
}

async function post(url: string, secret: string, id: string, body: string): Promise<number> {
  const timestamp = Math.floor(Date.now() / 1000).toString()
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": timestamp,
      "webhook-signature": signature(secret, id, timestamp, body),
    },
    body,
    redirect: "manual",
    signal: AbortSignal.timeout(10_000),
  })
  return response.status
}

export default async function healthcommerceStatus({ event, container }: SubscriberArgs<{ id: string }>) {
  const url = process.env.HC_STATUS_WEBHOOK_URL
  const secret = process.env.HC_STATUS_WEBHOOK_SECRET
  const type = EVENT_TYPES[event.name]
  if (!url || !secret || !type) {
    return
  }
  const logger = container.resolve(ContainerRegistrationKeys.LOGGER)
  const query = container.resolve(ContainerRegistrationKeys.QUERY)
  let order: OrderRow | undefined
  let labels: Label[] = []
  if (event.name === "order.canceled") {
    const { data } = await query.graph({ entity: "order", fields: ["id", "metadata"], filters: { id: event.data.id } })
    order = data[0] as OrderRow | undefined
  } else {
    const { data } = await query.graph({
      entity: "fulfillment",
      fields: ["id", "labels.tracking_number", "labels.tracking_url", "order.id", "order.metadata"],
      filters: { id: event.data.id },
    })
    const fulfillment = data[0] as { order?: OrderRow; labels?: Label[] } | undefined
    order = fulfillment?.order
    labels = fulfillment?.labels ?? []
  }
  const reference = order?.metadata?.[REFERENCE_KEY]
  if (!order || typeof reference !== "string" || !reference) {
    return // not an order healthcommerce created
  }
  const label = labels.find((l) => l.tracking_number) ?? {}
  const body = JSON.stringify({
    type,
    timestamp: new Date().toISOString(),
    data: {
      order_reference: reference,
      id: order.id,
      tracking_number: label.tracking_number ?? "",
      tracking_url: label.tracking_url ?? "",
    },
  })
  const id = "msg_" + crypto.createHash("sha256").update(`${type}\n${event.data.id}`).digest("hex").slice(0, 32)
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const status = await post(url, secret, id, body)
      if (status >= 200 && status < 300) {
        return
      }
      logger.warn(`healthcommerce status ${type} ${id}: HTTP ${status} (attempt ${attempt})`)
    } catch (error) {
      logger.warn(`healthcommerce status ${type} ${id}: ${(error as Error).name} (attempt ${attempt})`)
    }
    await new Promise((resolve) => setTimeout(resolve, 500 * attempt))
  }
  logger.error(`healthcommerce status ${type} ${id} not delivered; the daily reconciliation will catch it`)
}

export const config: SubscriberConfig = {
  event: Object.keys(EVENT_TYPES),
}
