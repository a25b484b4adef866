from rlbasins.cli import app

app(prog_name="rlbasins")
