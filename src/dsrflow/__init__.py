"""dsrflow: data-subject requests under the APPI."""

__version__ = "0.1.0"
