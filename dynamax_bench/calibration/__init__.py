"""The `calibrate` stage: exit thresholds chosen on a calibration split for a stated target, not typed in."""
