"""A local WS-Management (WinRM) endpoint for tests: pywinrm runs PowerShell against it over HTTPS.

See server.py (the endpoint), powershell.py (the host-fact table that answers scripts) and
fixtures.py (pytest fixtures ``winrm_endpoint`` and ``winrm_endpoint_factory``).
"""
