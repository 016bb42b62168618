# StretchFS developer targets; each one sets up .venv first (scripts/bootstrap.sh).
.PHONY: run test unit e2e lint typecheck setup clean

run:            ## start a local cluster (Ctrl-C stops it)
	sh scripts/bootstrap.sh run

test:           ## run the whole test suite
	sh scripts/bootstrap.sh test

unit:           ## unit tests only
	sh scripts/bootstrap.sh test -m "not e2e"

e2e:            ## end-to-end tests only (real processes)
	sh scripts/bootstrap.sh test -m e2e

lint:
	sh scripts/bootstrap.sh setup && .venv/bin/ruff check stretchfs tests bench twisted

typecheck:      ## mypy on stretchfs/, with the count of Any in role code
	sh scripts/bootstrap.sh setup && PYTHON=.venv/bin/python sh scripts/typecheck.sh

setup:
	sh scripts/bootstrap.sh setup

clean:
	rm -rf .venv .tox build dist *.egg-info .stretchfs-dev twisted/plugins/dropin.cache
