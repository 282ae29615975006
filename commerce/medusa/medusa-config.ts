// Medusa 2 configuration for healthcommerce's `medusa` commerce backend tests (commerce/medusa/README.md).
// The admin dashboard is disabled, everything comes from the environment, and the server is started with
// `medusa start --host 127.0.0.1` by scripts/medusa.sh and tests/fulfillment/medusa/conftest.py (loopback only).
// Source: Medusa docs "Medusa Application Configuration" (projectConfig, admin.disable).
import { defineConfig } from "@medusajs/framework/utils"

function required(name: string): string {
  const value = process.env[name]
  if (!value) {
    throw new Error(`${name} must be set (see commerce/medusa/README.md)`)
  }
  return value
}

// Must match healthcommerce/fulfillment/backends/medusa/client.py DISPLAY_ID_KEY.
const DISPLAY_ID_KEY = "healthcommerce_display_id"

// Browsers never call this server: only healthcommerce's workers do, server to server.
const LOOPBACK_ORIGINS = "http://127.0.0.1,http://localhost"

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: required("DATABASE_URL"),
    databaseLogging: false,
    redisUrl: process.env.REDIS_URL || undefined,
    http: {
      storeCors: LOOPBACK_ORIGINS,
      adminCors: LOOPBACK_ORIGINS,
      authCors: LOOPBACK_ORIGINS,
      jwtSecret: required("JWT_SECRET"),
      cookieSecret: required("COOKIE_SECRET"),
    },
  },
  admin: {
    disable: true,
  },
  modules: [
    {
      // healthcommerce puts a display id in an order's metadata: its order reference and a short hash of the
      // submit's idempotency key (`HC-7K2M9XQ4PZ-3fa1c2d9`). Copying it into `custom_display_id` (unique among
      // orders not deleted, and searched by the Admin API's `q`) makes a second Medusa order for the same
      // submit impossible and lets the backend look the order up before creating it.
      resolve: "@medusajs/medusa/order",
      options: {
        generateCustomDisplayId: async (data: { metadata?: Record<string, unknown> | null }) => {
          const displayId = data?.metadata?.[DISPLAY_ID_KEY]
          return typeof displayId === "string" && displayId ? displayId : undefined
        },
      },
    },
  ],
})
