<#
Test-ConvergeLab.ps1 -Case NAME: one case of the Windows converge job (.github/workflows/windows-converge.yml).
Each converge run is components/iis/windows/Set-BeaconMtls.ps1 -Local, as SYSTEM (a scheduled
task: SYSTEM is the SSM Agent's account on EC2), with a desired state of the lab (python -m
scripts.windows_lab) and the lab's server PFX; its report is kept in -Out. Any mismatch throws:
the step fails, and so does the job. The cases, in the job's order:
  fail-closed-fresh   applicationHost.config cannot be written: the lock-down fails, the site gets
                      no https binding and HTTP.sys no record for 443, nothing answers there
  first-run           converges; the SChannel values the failed run wrote need a restart: exit
                      3010, asked for once, and the runner is not restarted
  restart-pending     the same run again without the restart: exit 4, nothing changed
  compliant           after the restart (its marker gone, as Windows starting again makes it):
                      compliant, nothing changed, the same mapped-account password
  applications        ManageSoftDL and ManageSoftRL appear (as the beacon installer makes them):
                      only the MIME maps change; what was written for them before applies
  handshakes          ops probe and curl.exe: device 200, no certificate 403.7, revoked 403.13,
                      foreign CA 403.16, expired 403.17, unmapped 401.2, each in the IIS log
  w3c-log             the IIS W3C log carries crt-subject, crt-issuer, crt-serial, crt-flags and
                      the mapped account as the user of an admitted device
  state-folder        a link and a file open to Users planted in the state folder: deleted, made private
  account-record      the password record lost: the account is set to what the mappings hold
  mime-web-config     a web.config adds a MIME map the site has: ours goes, and comes back after it
  observe             to observe: only sslFlags and anonymous change; devices still admitted
  require             back to require: only sslFlags and anonymous change; the matrix again
  fail-closed-locked  applicationHost.config cannot be written while the state asks for observe
                      and a new mapping: the run fails, the site stays locked (403.7, 401.2, never 200)
  schannel-restart    an SChannel value changed behind the run's back: set back, exit 3010, no restart
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateSet('fail-closed-fresh', 'first-run', 'restart-pending', 'compliant', 'applications', 'handshakes', 'w3c-log', 'state-folder', 'account-record', 'mime-web-config', 'observe', 'require', 'fail-closed-locked', 'schannel-restart')]
    [string]$Case,
    [string]$Lab = 'lab',
    [string]$Out = 'artifacts'
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module -Name 'WebAdministration'
$labDir = [IO.Path]::GetFullPath($Lab)
$outDir = [IO.Path]::GetFullPath($Out)
$reportDir = Join-Path $outDir 'reports'
$null = New-Item -ItemType Directory -Path $reportDir -Force
$manifest = ConvertFrom-Json -InputObject ([IO.File]::ReadAllText((Join-Path $labDir 'lab.json')))
$converge = [IO.Path]::GetFullPath('components\iis\windows\Set-BeaconMtls.ps1')
$appHostConfig = Join-Path $env:windir 'System32\inetsrv\config\applicationHost.config'
$dataDir = Join-Path $env:ProgramData 'flexnet-beacon'
$site = 'Default Web Site'
$certMapFilter = 'system.webServer/security/authentication/iisClientCertificateMappingAuthentication'
$curl = Join-Path $env:SystemRoot 'System32\curl.exe'  # the one Windows ships (Schannel), not Git's
$passwordHashFile = Join-Path $env:RUNNER_TEMP 'mapped-password.sha256'
# Only the sub-status differs from a denial to an admission here: observe serves these anonymously.
$observeAdmits = @('none', 'unmapped')

function Assert-Lab {
    # Messages go to the host (the step's log), never down the pipeline: functions here return values.
    param([bool]$That, [string]$Message)
    if (-not $That) { throw "FAIL ($Case): $Message" }
    Write-Host "ok: $Message"
}

function Invoke-Native {
    # Windows PowerShell 5.1 turns a native program's stderr into error records when its own
    # stderr is redirected (as on a runner), and 'Stop' would end the case at the first line:
    # stderr goes to a file of the artifacts instead; stdout and the exit code come back.
    param([string]$FilePath, [string[]]$ArgumentList, [string]$Name)
    $previous = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    $errorFile = Join-Path $reportDir "$Case-$Name.stderr.txt"
    try {
        $output = & $FilePath @ArgumentList 2> $errorFile
        $code = $LASTEXITCODE
    } finally { $ErrorActionPreference = $previous }
    return @{ output = @($output); code = $code }
}

function Get-LabPath {
    param([string]$Name)
    return (Join-Path $labDir $Name)
}

function Format-TaskArgument {
    param([string]$Value)
    return "`"$Value`""
}

function Invoke-ConvergeRun {
    # Set-BeaconMtls.ps1 -Local as SYSTEM, through a scheduled task (Task Scheduler records the
    # process's exit code as LastTaskResult); returns the report and checks the exit code.
    param([string]$Name, [string]$StateName, [int]$Expect)
    $report = Join-Path $reportDir "$Case-$Name.json"
    if (Test-Path -LiteralPath $report) { Remove-Item -LiteralPath $report -Force }
    $arguments = @('-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', (Format-TaskArgument -Value $converge), '-Local',
        '-StatePath', (Format-TaskArgument -Value (Get-LabPath -Name $manifest.states.$StateName)),
        '-PfxPath', (Format-TaskArgument -Value (Get-LabPath -Name $manifest.serverPfx)),
        '-PfxPasswordPath', (Format-TaskArgument -Value (Get-LabPath -Name $manifest.serverPfxSecretFile)),
        '-ReportPath', (Format-TaskArgument -Value $report)) -join ' '
    $task = "flexnet-beacon-converge-$Case-$Name"
    $action = New-ScheduledTaskAction -Execute (Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe') -Argument $arguments
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -ExecutionTimeLimit ([TimeSpan]::FromSeconds(1800))
    $null = Register-ScheduledTask -TaskName $task -Action $action -Principal $principal -Settings $settings -Force
    try {
        Start-ScheduledTask -TaskName $task
        $deadline = (Get-Date).AddMinutes(30)
        do {
            Start-Sleep -Seconds 3
            $taskState = "$((Get-ScheduledTask -TaskName $task).State)"
            $code = [long](Get-ScheduledTaskInfo -TaskName $task).LastTaskResult
            # 267009 (0x41301) running, 267011 (0x41303) not run yet: Task Scheduler's own codes.
        } while (((@('Running', 'Queued') -contains $taskState) -or $code -eq 267009 -or $code -eq 267011) -and (Get-Date) -lt $deadline)
    } finally { Unregister-ScheduledTask -TaskName $task -Confirm:$false }
    if (-not (Test-Path -LiteralPath $report)) { throw "FAIL ($Case): run $Name wrote no report (task state $taskState, result $code); see converge.log in the artifacts" }
    $parsed = ConvertFrom-Json -InputObject ([IO.File]::ReadAllText($report))
    Write-Host "run ${Name}: exit $code, status $($parsed.status), $(@($parsed.changes).Count) changes, $(@($parsed.drift).Count) drift"
    foreach ($step in @($parsed.steps)) { Write-Host "  step $($step.name): $($step.status) $($step.error)" }
    foreach ($change in @($parsed.changes)) { Write-Host "  changed: $change" }
    foreach ($warning in @($parsed.warnings)) { Write-Host "  warning: $warning" }
    Assert-Lab -That ($code -eq $Expect) -Message "run $Name exits $Expect (got $code; error: $($parsed.error))"
    return $parsed
}

function Get-StepStatus {
    param($Report, [string]$Name)
    return [string](@($Report.steps | Where-Object { $_.name -eq $Name } | ForEach-Object { $_.status }) -join ',')
}

function Assert-Compliant {
    param($Report)
    Assert-Lab -That ($Report.status -eq 'compliant') -Message "status compliant (got $($Report.status))"
    Assert-Lab -That (@($Report.changes).Count -eq 0 -and @($Report.drift).Count -eq 0) -Message "nothing changed, no drift (changes: $(@($Report.changes) -join ' | '))"
}

function Assert-OnlyChanges {
    # Every change of the run is one this case allows, and there is at least one.
    param($Report, [string]$Pattern, [string]$What)
    $changes = @($Report.changes)
    $others = @($changes | Where-Object { $_ -notmatch $Pattern })
    Assert-Lab -That ($changes.Count -gt 0 -and $others.Count -eq 0) -Message "only $What changed ($($changes.Count) changes; others: $($others -join ' | '))"
}

function Assert-NoRestart {
    $boot = (Get-CimInstance -ClassName 'Win32_OperatingSystem' -Property 'LastBootUpTime').LastBootUpTime.ToUniversalTime().ToString('o')
    $before = (Get-Content -LiteralPath (Join-Path $outDir 'boot-time.txt') -Raw).Trim()
    Assert-Lab -That ($boot -eq $before) -Message "the runner was not restarted (booted $boot, as at the start of the job)"
}

function Get-MappedPasswordHash {
    # The password the many-to-one mappings hold, read as the converge run reads it
    # (Microsoft.Web.Administration decrypts the attribute); only its SHA-256 leaves this function.
    $null = [Reflection.Assembly]::LoadFrom((Join-Path $env:windir 'System32\inetsrv\Microsoft.Web.Administration.dll'))
    $manager = New-Object -TypeName Microsoft.Web.Administration.ServerManager
    try {
        $section = $manager.GetApplicationHostConfiguration().GetSection($certMapFilter, $site)
        $held = @(foreach ($item in @($section.GetCollection('manyToOneMappings'))) { [string]$item.GetAttributeValue('password') }) | Select-Object -Unique
    } finally { $manager.Dispose() }
    Assert-Lab -That (@($held).Count -eq 1 -and "$(@($held)[0])".Length -ge 40) -Message 'the mappings hold one password of 40 characters or more'
    $hasher = [Security.Cryptography.SHA256]::Create()
    try { return (-join @($hasher.ComputeHash([Text.Encoding]::UTF8.GetBytes([string]@($held)[0])) | ForEach-Object { $_.ToString('x2') })) } finally { $hasher.Dispose() }
}

function Assert-SamePassword {
    $now = Get-MappedPasswordHash
    $before = (Get-Content -LiteralPath $passwordHashFile -Raw).Trim()
    Assert-Lab -That ($now -eq $before) -Message 'the mapped account password is the one the first converged run set'
}

function Get-HttpSysRecord {
    # netsh http show sslcert for 0.0.0.0:443 as name -> value ($null: no record).
    $lines = & netsh.exe @('http', 'show', 'sslcert', 'ipport=0.0.0.0:443')
    if ($LASTEXITCODE -ne 0) { return $null }
    $record = @{}
    foreach ($line in $lines) { if ("$line" -match '^\s*(.+?)\s*:\s(.*)$') { $record[$Matches[1].Trim()] = $Matches[2].Trim() } }
    return $record
}

function Get-ConfigHash {
    return (Get-FileHash -LiteralPath $appHostConfig -Algorithm SHA256).Hash
}

function Set-ConfigReadOnly {
    # applicationHost.config read-only: every commit of the IIS configuration system fails.
    param([bool]$ReadOnly)
    Set-ItemProperty -LiteralPath $appHostConfig -Name 'IsReadOnly' -Value $ReadOnly
}

function Invoke-Curl {
    # One request as a device would make it, with curl.exe (Schannel): the HTTP status, or '000'
    # when nothing answered. The query names the client and the phase for the IIS log.
    param([string]$Client, [string]$Phase)
    $arguments = @('--silent', '--show-error', '--output', 'NUL', '--write-out', '%{http_code}', '--max-time', '60',
        '--resolve', "$($manifest.serverName):443:127.0.0.1", '--cacert', (Get-LabPath -Name $manifest.serverCa), '--ssl-no-revoke')
    $files = $manifest.clients.$Client.files
    if ($null -ne $files) {
        $password = (Get-Content -LiteralPath (Get-LabPath -Name $manifest.clientsSecretFile) -Raw).Trim()
        $arguments += @('--cert', (Get-LabPath -Name "clients\$($files.pfx)"), '--cert-type', 'P12', '--pass', $password)
    }
    $arguments += "https://$($manifest.serverName)/ManageSoftDL/?case=$Client-$Phase"
    $result = Invoke-Native -FilePath $curl -ArgumentList $arguments -Name "curl-$Client-$Phase"
    $status = "$($result.output -join '')".Trim()
    Write-Host "curl $Client ($Phase): HTTP $status (curl exit $($result.code))"
    return $status
}

function Read-IisLog {
    # The W3C entries of the beacon's site, each a hashtable of the fields its #Fields: line names.
    $iisSite = Get-Website -Name $site
    $folder = Join-Path ([Environment]::ExpandEnvironmentVariables([string]$iisSite.logFile.directory)) "W3SVC$($iisSite.id)"
    $entries = [Collections.ArrayList]::new()
    foreach ($file in @(Get-ChildItem -LiteralPath $folder -Filter '*.log' -ErrorAction SilentlyContinue)) {
        $fields = @()
        foreach ($line in @(Get-Content -LiteralPath $file.FullName)) {
            if ($line -like '#Fields: *') { $fields = @($line.Substring(9).Split(' ')); continue }
            if ($line -like '#*' -or $fields.Count -eq 0) { continue }
            $values = $line.Split(' ')
            $entry = @{}
            for ($index = 0; $index -lt $fields.Count -and $index -lt $values.Count; $index++) { $entry[$fields[$index]] = $values[$index] }
            [void]$entries.Add($entry)
        }
    }
    return $entries
}

function Wait-IisLog {
    # The entries of this phase's requests: HTTP.sys writes its log buffer every minute or on flush.
    param([string]$Phase, [string[]]$Clients)
    $deadline = (Get-Date).AddMinutes(3)
    do {
        $null = & netsh.exe @('http', 'flush', 'logbuffer')
        $found = @{}
        foreach ($entry in @(Read-IisLog)) {
            foreach ($client in $Clients) { if ($entry['cs-uri-query'] -eq "case=$client-$Phase") { $found[$client] = $entry } }
        }
        if ($found.Count -eq $Clients.Count) { return $found }
        Start-Sleep -Seconds 5
    } while ((Get-Date) -lt $deadline)
    throw "FAIL ($Case): the IIS log has no entry for $(@($Clients | Where-Object { -not $found.ContainsKey($_) }) -join ', ') of phase $Phase after 3 minutes"
}

function Test-Matrix {
    # Every lab client with curl.exe (HTTP status) and in the IIS log (status and sub-status).
    param([string]$Phase, [string]$Enforcement)
    $clients = @($manifest.clients.PSObject.Properties | ForEach-Object { $_.Name })
    $expected = @{}
    foreach ($client in $clients) {
        $status, $substatus = @($manifest.clients.$client.expect)
        if ($Enforcement -eq 'observe' -and $observeAdmits -contains $client) { $status, $substatus = 200, 0 }
        $expected[$client] = "$status.$substatus"
        $got = Invoke-Curl -Client $client -Phase $Phase
        Assert-Lab -That ($got -eq "$status") -Message "$client ($Enforcement): curl.exe gets HTTP $status (got $got)"
    }
    $logged = Wait-IisLog -Phase $Phase -Clients $clients
    foreach ($client in $clients) {
        $entry = $logged[$client]
        $got = "$($entry['sc-status']).$($entry['sc-substatus'])"
        Assert-Lab -That ($got -eq $expected[$client]) -Message "$client ($Enforcement): IIS logs $($expected[$client]) (got $got)"
    }
    return $logged
}

function Invoke-Probe {
    # python -m scripts.ops probe, as an operator runs it against a beacon: TLS 1.3 and 1.2.
    param([string]$Enforcement)
    $clients = Get-LabPath -Name 'clients'
    $arguments = @('-m', 'scripts.ops', 'probe', "https://$($manifest.serverName)/ManageSoftDL/", '--connect', '127.0.0.1',
        '--ca', (Get-LabPath -Name $manifest.serverCa), '--enforcement', $Enforcement, '--tls12', '--json',
        '--cert', (Join-Path $clients $manifest.clients.device.files.pem), '--key', (Join-Path $clients $manifest.clients.device.files.key),
        '--revoked-cert', (Join-Path $clients $manifest.clients.revoked.files.pem), '--revoked-key', (Join-Path $clients $manifest.clients.revoked.files.key))
    $run = Invoke-Native -FilePath 'python.exe' -ArgumentList $arguments -Name "probe-$Enforcement"
    $code = $run.code
    $text = $run.output -join "`n"
    Set-Content -LiteralPath (Join-Path $reportDir "$Case-probe-$Enforcement.json") -Value $text -Encoding UTF8
    $result = ConvertFrom-Json -InputObject $text
    foreach ($row in @($result.matrix)) { Write-Host "  probe $($row.case) [$($row.tls)]: expect $($row.expect), got $($row.outcome) $($row.httpStatus) $($row.detail)" }
    Assert-Lab -That ($code -eq 0 -and $result.ok -eq $true -and @($result.matrix).Count -eq 8) -Message "ops probe --enforcement $Enforcement passes all 8 rows (exit $code)"
}

function New-Applications {
    # What the beacon installer makes: the two applications of the site, with a page to download.
    foreach ($name in @('ManageSoftDL', 'ManageSoftRL')) {
        $folder = Join-Path $env:SystemDrive "inetpub\wwwroot\$name"
        $null = New-Item -ItemType Directory -Path $folder -Force
        Set-Content -LiteralPath (Join-Path $folder 'index.html') -Value "<p>$name of the converge lab</p>" -Encoding ASCII
        $null = New-WebApplication -Site $site -Name $name -PhysicalPath $folder -ApplicationPool 'DefaultAppPool'
    }
}

$lockdownChanges = '^system\.webServer/security/(access/@sslFlags|authentication/anonymousAuthentication/@enabled) at '

switch ($Case) {
    'fail-closed-fresh' {
        Assert-Lab -That ($null -eq (Get-WebBinding -Name $site -Protocol 'https')) -Message "a fresh site: '$site' has no https binding"
        Assert-Lab -That ($null -eq (Get-HttpSysRecord)) -Message 'a fresh host: HTTP.sys has no record for 0.0.0.0:443'
        $before = Get-ConfigHash
        Set-ConfigReadOnly -ReadOnly $true
        try { $report = Invoke-ConvergeRun -Name 'read-only' -StateName 'require' -Expect 1 }
        finally { Set-ConfigReadOnly -ReadOnly $false }
        Assert-Lab -That ((Get-ConfigHash) -eq $before) -Message 'applicationHost.config was not written'
        Assert-Lab -That ((Get-StepStatus -Report $report -Name 'lockdown') -eq 'failed') -Message 'the lockdown step failed'
        foreach ($step in @('siteBinding', 'httpSys')) { Assert-Lab -That ((Get-StepStatus -Report $report -Name $step) -eq 'skipped') -Message "step $step was skipped (it needs the lock-down)" }
        Assert-Lab -That ($null -eq (Get-WebBinding -Name $site -Protocol 'https')) -Message 'still no https binding'
        Assert-Lab -That ($null -eq (Get-HttpSysRecord)) -Message 'still no HTTP.sys record for 443'
        $got = Invoke-Curl -Client 'none' -Phase 'fresh'
        Assert-Lab -That ($got -eq '000') -Message "nothing answers on 443, never an anonymous 200 (got HTTP $got)"
        Assert-Lab -That ($report.checks.reboot.pending -eq $true -and $null -eq $report.checks.reboot.requestedAt) -Message 'the SChannel change is recorded, and a failed run asks for no restart'
    }
    'first-run' {
        $report = Invoke-ConvergeRun -Name 'converge' -StateName 'require' -Expect 3010
        Assert-Lab -That ($report.status -eq 'reboot-pending' -and $report.rebootRequired -eq $true) -Message 'status reboot-pending'
        Assert-Lab -That (@($report.steps | Where-Object { $_.status -eq 'failed' -or $_.status -eq 'skipped' }).Count -eq 0) -Message 'no step failed or was skipped'
        Assert-Lab -That (@($report.checks.reboot.reasons | Where-Object { $_ -like 'SCHANNEL ClientAuthTrustMode set to 2*' }).Count -eq 1) -Message 'the restart is for the SChannel value'
        Assert-Lab -That ($null -ne $report.checks.reboot.requestedAt) -Message 'the restart was asked for (once: recorded as requested)'
        $schannel = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL'
        Assert-Lab -That ($schannel.ClientAuthTrustMode -eq 2 -and $schannel.SendTrustedIssuerList -eq 1) -Message 'SCHANNEL ClientAuthTrustMode 2 and SendTrustedIssuerList 1 are written'
        Assert-NoRestart
        $binding = Get-WebBinding -Name $site -Protocol 'https'
        Assert-Lab -That ("$($binding.certificateHash)".ToUpperInvariant() -eq $manifest.serverThumbprint) -Message "the https binding shows the lab certificate in IIS Manager (AddSslCertificate)"
        $record = Get-HttpSysRecord
        Assert-Lab -That ($null -ne $record -and $record['Certificate Hash'] -eq $manifest.serverThumbprint.ToLowerInvariant()) -Message "HTTP.sys serves $($manifest.serverThumbprint) on 0.0.0.0:443"
        Assert-Lab -That ($record['Negotiate Client Certificate'] -eq 'Enabled' -and $record['Verify Client Certificate Revocation'] -eq 'Enabled' -and $record['CTL Store Name'] -eq 'ClientAuthIssuer') -Message 'HTTP.sys keeps every flag after netsh http update sslcert'
        $roots = @($report.checks.trustStores.nonSelfSignedInRoot | ForEach-Object { $_.thumbprint })
        Assert-Lab -That ($roots -contains $manifest.sameNameRoot.thumbprint -and $roots -notcontains $manifest.caThumbprint) -Message 'X509Chain tells the same-name certificate from the self-signed lab root'
        Assert-Lab -That (@($report.warnings | Where-Object { $_ -like 'MIME maps wait for the beacon*' }).Count -eq 1) -Message 'MIME maps wait for the applications'
        Set-Content -LiteralPath $passwordHashFile -Value (Get-MappedPasswordHash) -Encoding ASCII
    }
    'restart-pending' {
        $report = Invoke-ConvergeRun -Name 'again' -StateName 'require' -Expect 4
        Assert-Lab -That ($report.status -eq 'reboot-pending' -and @($report.changes).Count -eq 0 -and @($report.drift).Count -eq 0) -Message 'reboot-pending, nothing changed, no drift'
        Assert-NoRestart
        Assert-SamePassword
    }
    'compliant' {
        # What Windows starting again does for the run: the restart marker is older than the boot.
        Remove-Item -LiteralPath (Join-Path $dataDir 'reboot-pending.json') -Force
        $report = Invoke-ConvergeRun -Name 'again' -StateName 'require' -Expect 0
        Assert-Compliant -Report $report
        Assert-SamePassword
        Assert-Lab -That (@($report.warnings | Where-Object { $_ -like '*could not be read*' }).Count -eq 0) -Message "the DPAPI record SYSTEM wrote in one run is read by the next"
    }
    'applications' {
        New-Applications
        $report = Invoke-ConvergeRun -Name 'installed' -StateName 'require' -Expect 0
        Assert-OnlyChanges -Report $report -Pattern '^IIS serves no \.[a-z]+ files at ' -What 'the MIME maps of the agent files'
        foreach ($where in @($report.checks.locations)) {
            Assert-Lab -That ($where.sslFlags -eq 'Ssl,SslNegotiateCert,SslRequireCert' -and $where.anonymousEnabled -eq $false) -Message "IIS applies the lock-down at '$($where.location)', written before it existed"
        }
        $again = Invoke-ConvergeRun -Name 'again' -StateName 'require' -Expect 0
        Assert-Compliant -Report $again
    }
    'handshakes' {
        Invoke-Probe -Enforcement 'require'
        $null = Test-Matrix -Phase 'require' -Enforcement 'require'
    }
    'w3c-log' {
        $logged = Wait-IisLog -Phase 'require' -Clients @('device', 'unmapped')
        $device = $logged['device']
        foreach ($field in @('crt-subject', 'crt-issuer', 'crt-serial', 'crt-flags')) {
            Assert-Lab -That ($device.ContainsKey($field) -and $device[$field] -ne '-') -Message "the W3C log has $field for an admitted device ($($device[$field]))"
        }
        Assert-Lab -That ($device['crt-subject'] -like "*$($manifest.deviceCommonName)*" -and $device['crt-issuer'] -like "*$($manifest.caName.Replace(' ', '+'))*") -Message 'crt-subject and crt-issuer name the device and the lab CA'
        Assert-Lab -That ($device['cs-username'] -like "*$($manifest.mappedAccount)") -Message "the device is logged on as the mapped account ($($device['cs-username']))"
        Assert-Lab -That ($logged['unmapped']['crt-subject'] -like '*Other+Org*') -Message 'a refused certificate is logged with its subject too'
    }
    'state-folder' {
        $planted = Join-Path $dataDir 'planted.txt'
        Set-Content -LiteralPath $planted -Value 'planted' -Encoding ASCII
        $acl = Get-Acl -LiteralPath $planted
        $users = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList 'S-1-5-32-545'
        $acl.AddAccessRule((New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList $users, 'Read', 'Allow'))
        Set-Acl -LiteralPath $planted -AclObject $acl
        $target = Join-Path $env:RUNNER_TEMP 'link-target'
        $null = New-Item -ItemType Directory -Path $target -Force
        Set-Content -LiteralPath (Join-Path $target 'keep.txt') -Value 'kept' -Encoding ASCII
        $null = New-Item -ItemType Junction -Path (Join-Path $dataDir 'planted-link') -Value $target
        $report = Invoke-ConvergeRun -Name 'repair' -StateName 'require' -Expect 0
        Assert-OnlyChanges -Report $report -Pattern 'planted' -What 'the planted items'
        Assert-Lab -That (-not (Test-Path -LiteralPath (Join-Path $dataDir 'planted-link'))) -Message 'the planted link is deleted'
        Assert-Lab -That (Test-Path -LiteralPath (Join-Path $target 'keep.txt')) -Message 'what the link pointed to is untouched'
        # Made private, or deleted when its owner is not one the run trusts (Administrators may be listed as owner or not).
        $open = @()
        if (Test-Path -LiteralPath $planted) { $open = @((Get-Acl -LiteralPath $planted).GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]) | Where-Object { $_.IdentityReference.Value -eq 'S-1-5-32-545' }) }
        Assert-Lab -That ($open.Count -eq 0) -Message 'the file open to Users is made private (or deleted)'
    }
    'account-record' {
        Remove-Item -LiteralPath (Join-Path $dataDir 'mapped-account.dpapi') -Force
        $report = Invoke-ConvergeRun -Name 'lost-record' -StateName 'require' -Expect 0
        Assert-OnlyChanges -Report $report -Pattern "^local user $($manifest.mappedAccount): set to the password the mappings hold" -What 'the account password (set to the one the mappings hold)'
        Assert-Lab -That (Test-Path -LiteralPath (Join-Path $dataDir 'mapped-account.dpapi')) -Message 'the record is written again'
        Assert-SamePassword
        $got = Invoke-Curl -Client 'device' -Phase 'record'
        Assert-Lab -That ($got -eq '200') -Message 'the device is still admitted: Set-LocalUser took the same password'
    }
    'mime-web-config' {
        $webConfig = Join-Path $env:SystemDrive 'inetpub\wwwroot\ManageSoftDL\web.config'
        Set-Content -LiteralPath $webConfig -Encoding ASCII -Value '<?xml version="1.0" encoding="UTF-8"?><configuration><system.webServer><staticContent><mimeMap fileExtension=".osd" mimeType="application/octet-stream" /></staticContent></system.webServer></configuration>'
        $report = Invoke-ConvergeRun -Name 'duplicate' -StateName 'require' -Expect 0
        Assert-OnlyChanges -Report $report -Pattern "^MIME map \.osd at '$site' is also added by a web\.config" -What 'our .osd map (GetWebConfiguration named the duplicate extension)'
        Remove-Item -LiteralPath $webConfig -Force
        $report = Invoke-ConvergeRun -Name 'gone' -StateName 'require' -Expect 0
        Assert-OnlyChanges -Report $report -Pattern "^IIS serves no \.osd files at '$site'" -What 'our .osd map, back'
    }
    'observe' {
        $report = Invoke-ConvergeRun -Name 'observe' -StateName 'observe' -Expect 0
        Assert-OnlyChanges -Report $report -Pattern $lockdownChanges -What 'sslFlags and anonymous authentication'
        Assert-SamePassword
        Invoke-Probe -Enforcement 'observe'
        $null = Test-Matrix -Phase 'observe' -Enforcement 'observe'
    }
    'require' {
        $report = Invoke-ConvergeRun -Name 'require' -StateName 'require' -Expect 0
        Assert-OnlyChanges -Report $report -Pattern $lockdownChanges -What 'sslFlags and anonymous authentication'
        Assert-SamePassword
        Invoke-Probe -Enforcement 'require'
        $null = Test-Matrix -Phase 'require-again' -Enforcement 'require'
    }
    'fail-closed-locked' {
        $before = Get-ConfigHash
        Set-ConfigReadOnly -ReadOnly $true
        try { $report = Invoke-ConvergeRun -Name 'read-only' -StateName 'lockedObserve' -Expect 1 }
        finally { Set-ConfigReadOnly -ReadOnly $false }
        Assert-Lab -That ((Get-ConfigHash) -eq $before) -Message 'applicationHost.config was not written'
        Assert-Lab -That ((Get-StepStatus -Report $report -Name 'lockdown') -eq 'failed') -Message 'the lockdown step failed'
        Assert-Lab -That (@($report.changes | Where-Object { $_ -match $lockdownChanges }).Count -eq 0) -Message 'no section setting is reported changed'
        $null = Test-Matrix -Phase 'locked' -Enforcement 'require'
        $again = Invoke-ConvergeRun -Name 'writable' -StateName 'require' -Expect 0
        Assert-Compliant -Report $again
    }
    'schannel-restart' {
        $key = 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL'
        Set-ItemProperty -Path $key -Name 'ClientAuthTrustMode' -Value 0
        $report = Invoke-ConvergeRun -Name 'drift' -StateName 'require' -Expect 3010
        Assert-OnlyChanges -Report $report -Pattern "^SCHANNEL ClientAuthTrustMode is '0', desired 2$" -What 'the SChannel value'
        Assert-Lab -That ((Get-ItemProperty -Path $key).ClientAuthTrustMode -eq 2) -Message 'ClientAuthTrustMode is 2 again'
        Assert-NoRestart
    }
}
Write-Output "case $Case passed"
# The step ends with the last exit code a script sets: a native call of a passing case (curl.exe that
# found nothing listening, netsh that found no record) must not fail it.
exit 0
