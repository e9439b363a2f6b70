"""Reports: the period's figures, the CSV export, the handling record and the metrics."""
