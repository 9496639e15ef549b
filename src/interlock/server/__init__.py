"""The gateway server: the HTTP API (`/v1`), the reviewer web UI, and what runs beside them."""
