"""Models shipped with the package: `default/` is what `--model default` loads."""
