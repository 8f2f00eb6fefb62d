"""Settings of the payment-gateway service."""

from __future__ import annotations

from paysys.kit.settings import KitSettings


class PaymentGatewaySettings(KitSettings):
    # Simulated processor latency, to make timeouts and in-flight states testable.
    processor_latency_ms: int = 0
