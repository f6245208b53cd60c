"""pulsewire: fast, controllable dead-peer detection for long-lived asyncio connections."""
