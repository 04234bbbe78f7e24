"""Calibration data: INT8 calibration sets and labelled face sets built from pinned packages."""
