"""First-party steerkit plugins. Each module is registered through the ``steerkit`` entry
point group and uses only steerkit's public API, exactly as a third-party plugin would."""
