"""SMS and call gateways. Each module maps our messages to one gateway's wire format and back."""
