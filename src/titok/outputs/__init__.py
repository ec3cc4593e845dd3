"""What a finished run gives its user besides the adapter: the HTML report, the export."""
