"""Measuring the grader: eval datasets, agreement metrics, reports and threshold calibration."""
