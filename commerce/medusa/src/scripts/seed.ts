// Seed what healthcommerce's orders need in a fresh Medusa 2 database, once, into the template database
// (scripts/medusa.sh): a US/USD region, a sales channel, a stock location with a fulfilment set, a service zone
// for the US and a flat "Standard shipping" option, and a secret API key for server-to-server calls.
// Run with `medusa exec ./src/scripts/seed.ts`; writes the ids and the key as JSON to $HC_MEDUSA_SEED_OUT.
// Source: Medusa docs "Seed Data with Custom CLI Script" and the core-flows workflow references.
import { writeFileSync } from "node:fs"

import type { ExecArgs } from "@medusajs/framework/types"
import { ContainerRegistrationKeys, Modules } from "@medusajs/framework/utils"
import {
  createApiKeysWorkflow,
  createRegionsWorkflow,
  createSalesChannelsWorkflow,
  createShippingOptionsWorkflow,
  createShippingProfilesWorkflow,
  createStockLocationsWorkflow,
  createTaxRegionsWorkflow,
  linkSalesChannelsToStockLocationWorkflow,
  updateStoresWorkflow,
} from "@medusajs/medusa/core-flows"

export default async function seed({ container }: ExecArgs): Promise<void> {
  const out = process.env.HC_MEDUSA_SEED_OUT
  if (!out) {
    throw new Error("HC_MEDUSA_SEED_OUT must name the JSON file to write")
  }
  const logger = container.resolve(ContainerRegistrationKeys.LOGGER)
  const link = container.resolve(ContainerRegistrationKeys.LINK)
  const storeModule = container.resolve(Modules.STORE)
  const fulfillmentModule = container.resolve(Modules.FULFILLMENT)

  const {
    result: [salesChannel],
  } = await createSalesChannelsWorkflow(container).run({
    input: { salesChannelsData: [{ name: "healthcommerce", description: "Orders signed in healthcommerce" }] },
  })

  const [store] = await storeModule.listStores()
  await updateStoresWorkflow(container).run({
    input: {
      selector: { id: store.id },
      update: {
        supported_currencies: [{ currency_code: "usd", is_default: true }],
        default_sales_channel_id: salesChannel.id,
      },
    },
  })

  const {
    result: [region],
  } = await createRegionsWorkflow(container).run({
    input: {
      regions: [{ name: "United States", currency_code: "usd", countries: ["us"], payment_providers: ["pp_system_default"] }],
    },
  })
  await createTaxRegionsWorkflow(container).run({ input: [{ country_code: "us", provider_id: "tp_system" }] })

  const {
    result: [stockLocation],
  } = await createStockLocationsWorkflow(container).run({
    input: {
      locations: [{ name: "Warehouse", address: { city: "Columbus", country_code: "US", address_1: "1 Depot Way" } }],
    },
  })
  await link.create({
    [Modules.STOCK_LOCATION]: { stock_location_id: stockLocation.id },
    [Modules.FULFILLMENT]: { fulfillment_provider_id: "manual_manual" },
  })

  const existingProfiles = await fulfillmentModule.listShippingProfiles({ type: "default" })
  let shippingProfile = existingProfiles[0]
  if (!shippingProfile) {
    const { result } = await createShippingProfilesWorkflow(container).run({
      input: { data: [{ name: "Default Shipping Profile", type: "default" }] },
    })
    shippingProfile = result[0]
  }

  const fulfillmentSet = await fulfillmentModule.createFulfillmentSets({
    name: "Warehouse delivery",
    type: "shipping",
    service_zones: [{ name: "United States", geo_zones: [{ country_code: "us", type: "country" }] }],
  })
  await link.create({
    [Modules.STOCK_LOCATION]: { stock_location_id: stockLocation.id },
    [Modules.FULFILLMENT]: { fulfillment_set_id: fulfillmentSet.id },
  })

  const {
    result: [shippingOption],
  } = await createShippingOptionsWorkflow(container).run({
    input: [
      {
        name: "Standard shipping",
        price_type: "flat",
        provider_id: "manual_manual",
        service_zone_id: fulfillmentSet.service_zones[0].id,
        shipping_profile_id: shippingProfile.id,
        type: { label: "Standard", description: "Ships in 2-3 days.", code: "standard" },
        prices: [
          { currency_code: "usd", amount: 0 },
          { region_id: region.id, amount: 0 },
        ],
        rules: [
          { attribute: "enabled_in_store", value: "true", operator: "eq" },
          { attribute: "is_return", value: "false", operator: "eq" },
        ],
      },
    ],
  })

  await linkSalesChannelsToStockLocationWorkflow(container).run({
    input: { id: stockLocation.id, add: [salesChannel.id] },
  })

  const {
    result: [apiKey],
  } = await createApiKeysWorkflow(container).run({
    input: { api_keys: [{ title: "healthcommerce", type: "secret", created_by: "healthcommerce-seed" }] },
  })

  const seeded = {
    region_id: region.id,
    sales_channel_id: salesChannel.id,
    stock_location_id: stockLocation.id,
    fulfillment_set_id: fulfillmentSet.id,
    shipping_profile_id: shippingProfile.id,
    shipping_option_id: shippingOption.id,
    api_key: apiKey.token,
  }
  writeFileSync(out, JSON.stringify(seeded, null, 2) + "\n", { mode: 0o600 })
  logger.info("healthcommerce seed: region, sales channel, stock location, shipping option and API key created")
}
