<#
Initialize-ConvergeLab.ps1: the Windows host of the converge job (.github/workflows/windows-converge.yml)
as an EC2 beacon is before its first converge run: the role services the desired state lists
(user data installs them on EC2), the lab's names in the hosts file, the lab CA's CRLs served
over http on this host (a second IIS site on the lab's CRL port, with its own application pool),
and a certificate in LocalMachine\Root that names itself but another key signed (what the
converge run's root-store check must tell from a self-signed root). The beacon's applications
(ManageSoftDL, ManageSoftRL) are not made here: on EC2 the converge run comes before the beacon
installer, and so it does in the job (Test-ConvergeLab.ps1 -Case applications).
Reads -Lab (python -m scripts.windows_lab --out DIR); writes the runner's boot time into -Out.
#>
[CmdletBinding()]
param([string]$Lab = 'lab', [string]$Out = 'artifacts')

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$labDir = [IO.Path]::GetFullPath($Lab)
$outDir = [IO.Path]::GetFullPath($Out)
$manifest = ConvertFrom-Json -InputObject ([IO.File]::ReadAllText((Join-Path $labDir 'lab.json')))
$state = ConvertFrom-Json -InputObject ([IO.File]::ReadAllText((Join-Path $labDir $manifest.states.require)))
$null = New-Item -ItemType Directory -Path $outDir -Force

# The role services of the desired state, Web-Cert-Auth among them, in one call as user data does.
$wanted = @($state.features.install)
if ($wanted -notcontains 'Web-Cert-Auth') { throw "the desired state does not list Web-Cert-Auth: $($wanted -join ', ')" }
$result = Install-WindowsFeature -Name $wanted
if (-not $result.Success) { throw "Install-WindowsFeature $($wanted -join ', ') failed: $($result.ExitCode)" }
# The job cannot restart the runner (it would end the job): a role service that needs one fails it here.
if ("$($result.RestartNeeded)" -eq 'Yes') { throw "Install-WindowsFeature asks for a restart: the runner cannot restart within the job" }
$missing = @(Get-WindowsFeature -Name $wanted | Where-Object { -not $_.Installed } | ForEach-Object { $_.Name })
if ($missing.Count -gt 0) { throw "role services still missing: $($missing -join ', ')" }
Write-Output "installed: $($wanted -join ', ')"

# Every later case compares the boot time with this one: the job never restarts the runner.
$boot = (Get-CimInstance -ClassName 'Win32_OperatingSystem' -Property 'LastBootUpTime').LastBootUpTime.ToUniversalTime().ToString('o')
Set-Content -LiteralPath (Join-Path $outDir 'boot-time.txt') -Value $boot -Encoding ASCII

# The lab's names resolve to this host (HTTP.sys fetches the CRL by the name in the device
# certificates); a blank line first, in case the file does not end with a line break.
Add-Content -LiteralPath (Join-Path $env:SystemRoot 'System32\drivers\etc\hosts') -Value @('', "127.0.0.1 $($manifest.serverName)", "127.0.0.1 $($manifest.crlHost)") -Encoding ASCII

# The CRLs over http, as the CDP URLs of the lab certificates name them.
Import-Module -Name 'WebAdministration'
$crlRoot = Join-Path $env:SystemDrive 'inetpub\lab-crl'  # the ACL wwwroot inherits: IIS reads it
$null = New-Item -ItemType Directory -Path $crlRoot -Force
Copy-Item -Path (Join-Path (Join-Path $labDir $manifest.crl) '*') -Destination $crlRoot
$null = New-WebAppPool -Name 'lab-crl'
$null = New-Website -Name 'lab-crl' -Port ([int]$manifest.crlPort) -PhysicalPath $crlRoot -ApplicationPool 'lab-crl'
foreach ($file in @(Get-ChildItem -LiteralPath $crlRoot)) {
    $url = "http://$($manifest.crlHost):$($manifest.crlPort)/$($file.Name)"
    $response = Invoke-WebRequest -Uri $url -UseBasicParsing -TimeoutSec 30
    if ([int]$response.StatusCode -ne 200) { throw "$url answered $($response.StatusCode), not 200" }
    Write-Output "served: $url"
}

# A same-name certificate that is not self-signed, in Root: the converge run must list it.
$null = Import-Certificate -FilePath (Join-Path $labDir $manifest.sameNameRoot.file) -CertStoreLocation 'Cert:\LocalMachine\Root'
Write-Output "in LocalMachine\Root: $($manifest.sameNameRoot.thumbprint) (names itself, signed by another key)"
# GitHub's powershell shell exits with $LASTEXITCODE: the last native call must not decide the step.
exit 0
