"""The LLM sweep kind: spec, cells, work, report (registered in kdfair_cli.sweep.kinds)."""
