"""CDS Hooks 2.0 service (order-select, order-sign): offers the app from inside the EHR's ordering workflow."""
