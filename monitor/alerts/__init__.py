"""Alert notifications: the ``alerts:`` section, grouping by cause, the durable outbox,
the formats (native, Alertmanager, Slack, Telegram, Zalo) and delivery with retries."""
