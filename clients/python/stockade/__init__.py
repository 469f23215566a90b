# SPDX-License-Identifier: Apache-2.0
"""A client for the stockade gateway (`stockade serve`, docs/api.md).

Standard library only. See clients/python/README.md.
"""
from .client import (
    Client,
    CommandResult,
    Files,
    Process,
    Sandbox,
    StockadeError,
)

__all__ = ["Client", "CommandResult", "Files", "Process", "Sandbox", "StockadeError"]
__version__ = "0.1.0"
