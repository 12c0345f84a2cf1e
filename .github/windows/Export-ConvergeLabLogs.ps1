<#
Export-ConvergeLabLogs.ps1: what the Windows converge job uploads, whatever failed: the IIS W3C
logs of every site, the HTTP.sys error logs (TLS-level refusals), the converge run's own log,
the HTTP.sys record of 0.0.0.0:443 and the https bindings, copied into -Out (the reports are
there already). Nothing here decides the job: a log that is missing is noted, not fatal.
#>
[CmdletBinding()]
param([string]$Out = 'artifacts')

$ErrorActionPreference = 'Stop'
$outDir = [IO.Path]::GetFullPath($Out)
$null = New-Item -ItemType Directory -Path $outDir -Force
# HTTP.sys writes its log buffers every minute; this writes them now.
$null = & netsh.exe @('http', 'flush', 'logbuffer')
$sources = @{
    'iis-logs' = Join-Path $env:SystemDrive 'inetpub\logs\LogFiles'
    'httperr-logs' = Join-Path $env:SystemRoot 'System32\LogFiles\HTTPERR'
    'converge-log' = Join-Path $env:ProgramData 'flexnet-beacon'
}
foreach ($name in @($sources.Keys)) {
    $target = Join-Path $outDir $name
    $null = New-Item -ItemType Directory -Path $target -Force
    foreach ($file in @(Get-ChildItem -LiteralPath $sources[$name] -Recurse -File -Filter '*.log' -ErrorAction SilentlyContinue)) {
        $relative = $file.FullName.Substring($sources[$name].Length).TrimStart('\')
        $destination = Join-Path $target $relative
        $null = New-Item -ItemType Directory -Path ([IO.Path]::GetDirectoryName($destination)) -Force
        Copy-Item -LiteralPath $file.FullName -Destination $destination
    }
    Write-Output "${name}: $(@(Get-ChildItem -LiteralPath $target -Recurse -File).Count) files"
}
# The converge log's rotated copy (converge.log.1) has no .log extension.
foreach ($rotated in @(Get-ChildItem -LiteralPath $sources['converge-log'] -Filter 'converge.log.*' -File -ErrorAction SilentlyContinue)) {
    Copy-Item -LiteralPath $rotated.FullName -Destination (Join-Path $outDir 'converge-log')
}
Set-Content -LiteralPath (Join-Path $outDir 'httpsys-sslcert.txt') -Value (& netsh.exe @('http', 'show', 'sslcert')) -Encoding UTF8
try {
    Import-Module -Name 'WebAdministration'
    Set-Content -LiteralPath (Join-Path $outDir 'iis-bindings.txt') -Value @(Get-WebBinding | ForEach-Object { "$($_.protocol) $($_.bindingInformation) $($_.certificateHash) $($_.certificateStoreName)" }) -Encoding UTF8
} catch { Write-Output "no IIS bindings to list: $($_.Exception.Message)" }
# GitHub's powershell shell exits with $LASTEXITCODE: the last native call must not decide the step.
exit 0
