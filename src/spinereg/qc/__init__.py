"""QC: figures of registrations (matplotlib) and an HTML report that opens from file://."""

from spinereg.qc.report import add_to_report, build_index, load_entries

__all__ = ["add_to_report", "build_index", "load_entries"]
