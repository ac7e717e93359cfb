from cebench.cli import app

app()
