<powershell>
# FlexNet beacon first boot (EC2Launch v2, Windows Server 2022). Static: never templated.
# Installs the IIS role services the beacon needs and removes WebDAV; everything else
# (certificates, HTTP.sys, mappings) comes later from the SSM converge association.
# A restart is asked for with exit 3010: EC2Launch v2 restarts and runs this again (at most
# 5 times); Restart-Computer would leave EC2Launch's state inconsistent (its documentation).
$ErrorActionPreference = 'Stop'
$dir = Join-Path $env:ProgramData 'flexnet-beacon'
# Created private: SYSTEM and Administrators only, nothing inherited from ProgramData (where any
# local user may create files). The converge run checks and repairs it on every run.
if (-not (Test-Path -LiteralPath $dir)) {
    $acl = New-Object -TypeName System.Security.AccessControl.DirectorySecurity
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $acl.AddAccessRule((New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList $identity, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow'))
    }
    $null = [IO.Directory]::CreateDirectory($dir, $acl)
}
$log = Join-Path $dir 'user-data.log'
# While this exists the converge script waits (bounded) before installing features itself.
$running = Join-Path $dir 'user-data.running'
function Write-Log {
    param([string]$Message)
    Add-Content -LiteralPath $log -Value ('{0} {1}' -f [DateTime]::UtcNow.ToString('o'), $Message) -Encoding UTF8
}
# Same list as components/iis/state.py IIS_FEATURES and REMOVED_FEATURES (a test keeps them equal).
$features = @('Web-Server', 'Web-WebServer', 'Web-Default-Doc', 'Web-Static-Content', 'Web-Http-Errors', 'Web-Http-Logging', 'Web-Filtering', 'Web-Cert-Auth', 'Web-Asp-Net45', 'Web-Net-Ext45', 'Web-ISAPI-Ext', 'Web-ISAPI-Filter', 'Web-Scripting-Tools')
$removed = @('Web-DAV-Publishing')
$restart = $false
$code = 0
Set-Content -LiteralPath $running -Value ([DateTime]::UtcNow.ToString('o')) -Encoding ASCII
try {
    Write-Log "installing $($features -join ', ')"
    $result = Install-WindowsFeature -Name $features
    Write-Log "Install-WindowsFeature: success=$($result.Success) exitCode=$($result.ExitCode) restartNeeded=$($result.RestartNeeded)"
    if (-not $result.Success) { throw 'Install-WindowsFeature failed' }
    if ("$($result.RestartNeeded)" -eq 'Yes') { $restart = $true }
    $present = @(Get-WindowsFeature -Name $removed | Where-Object { $_.Installed } | ForEach-Object { $_.Name })
    if ($present.Count -gt 0) {
        $result = Uninstall-WindowsFeature -Name $present
        Write-Log "Uninstall-WindowsFeature $($present -join ', '): success=$($result.Success) restartNeeded=$($result.RestartNeeded)"
        if (-not $result.Success) { throw 'Uninstall-WindowsFeature failed' }
        if ("$($result.RestartNeeded)" -eq 'Yes') { $restart = $true }
    }
} catch {
    Write-Log "failed: $($_.Exception.Message)"
    $code = 1
} finally {
    Remove-Item -LiteralPath $running -Force -ErrorAction SilentlyContinue
}
# Restart only when Windows says a feature change needs it; the log says so.
if ($code -eq 0 -and $restart) {
    Write-Log 'restart required by the feature change: exit 3010 (EC2Launch v2 restarts and runs this again)'
    $code = 3010
} elseif ($code -eq 0) {
    Write-Log 'done, no restart needed; configuration follows from the SSM association'
}
exit $code
</powershell>
