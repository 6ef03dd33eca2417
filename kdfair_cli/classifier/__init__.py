"""The classifier sweep kind: spec, cells, work, analyses, report, demo (registered in kdfair_cli.sweep.kinds)."""
