<#
Set-BeaconMtls.ps1: converge a FlexNet beacon (Windows Server 2022, IIS 10, Windows PowerShell 5.1)
to the desired state of components/iis/state.py and print ONE JSON report on stdout.
The state is data only (-StatePath FILE or -EncodedState TEXT); no value of it runs as code.
Steps run in a fixed order (at the end of this file), lock-down first, each in its own try/catch,
each recorded in report.steps; a step that needs a failed one is skipped and says why.
Exit codes: 0 compliant, converged, or (report-only) drift or reboot-pending; 1 failed;
3010 a change needs a restart: SSM Agent restarts the instance and runs this again (once per
change); 4 a restart was asked for before and has not happened yet.
-Local (on-premises beacons, the Windows CI job): the same run with no AWS call. The PFX and its
password come from -PfxPath/-PfxPasswordPath (without them the certificate bound in HTTP.sys
stays), a domain account's password from -AccountPasswordPath; the installer (S3), the beacon
configuration file and CloudWatch Logs are skipped with a warning. -ReportPath: the report also
goes to that file.
#>
[CmdletBinding()]
param([string]$StatePath, [string]$EncodedState, [switch]$ReportOnly, [string]$LogGroupName,
    [switch]$Local, [string]$PfxPath, [string]$PfxPasswordPath, [string]$AccountPasswordPath, [string]$ReportPath)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 serialises arrays as {"value":[...],"Count":n} while this type data exists.
try { Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue } catch { Write-Verbose 'no System.Array type data' }
$certMapFilter = 'system.webServer/security/authentication/iisClientCertificateMappingAuthentication'
$anonymousFilter = 'system.webServer/security/authentication/anonymousAuthentication'
$accessFilter = 'system.webServer/security/access'
$runtimeFilter = 'system.webServer/serverRuntime'
$staticFilter = 'system.webServer/staticContent'
$filteringFilter = 'system.webServer/security/requestFiltering'
$schannelKey = 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL'
$dataDir = Join-Path $env:ProgramData 'flexnet-beacon'
$logFile = Join-Path $dataDir 'converge.log'
$rebootMarker = Join-Path $dataDir 'reboot-pending.json'
$accountRecord = Join-Path $dataDir 'mapped-account.dpapi'
$userDataMarker = Join-Path $dataDir 'user-data.running'
$rebootHistory = Join-Path $dataDir 'reboot-history.json'
# Restart requests per beacon in any 24 hours; past that a value that keeps coming back after
# each restart (a GPO or baseline rewriting it at start-up) fails the run instead.
$rebootBudget = 3
$trustedSids = @('S-1-5-18', 'S-1-5-32-544')  # SYSTEM, Administrators
# Enum and flags values as IIS_schema.xml defines them (tests/iis/test_iis_schema.py checks each
# against IIS 10's schema): MWA and WebAdministration may read an enum back as its number.
$iisEnums = @{
    permissionMode = @{ Allow = 1; Deny = 2 }
    certificateField = @{ Subject = 1; Issuer = 2 }
    authenticatedUserOverride = @{ UseAuthenticatedUser = 1; UseWorkerProcessUser = 2 }
    sslFlags = @{ None = 0; Ssl = 8; SslNegotiateCert = 32; SslRequireCert = 64; Ssl128 = 256 }
    logFormat = @{ IIS = 0; NCSA = 1; W3C = 2; Custom = 3 }
    sourceType = @{ RequestHeader = 0; ResponseHeader = 1; ServerVariable = 2 }
    logExtFileFlags = @{ Date = 1; Time = 2; ClientIP = 4; UserName = 8; SiteName = 16; ComputerName = 32; ServerIP = 64; Method = 128; UriStem = 256; UriQuery = 512; HttpStatus = 1024; Win32Status = 2048; BytesSent = 4096; BytesRecv = 8192; TimeTaken = 16384; ServerPort = 32768; UserAgent = 65536; Cookie = 131072; Referer = 262144; ProtocolVersion = 524288; Host = 1048576; HttpSubStatus = 2097152 }
}
$state = $null
$reportOnlyMode = [bool]$ReportOnly
$localMode = [bool]$Local
$problems = [Collections.ArrayList]::new()
# The step in progress and where the report's lists stood when it began; results by step name.
$run = @{ step = $null; drift = 0; changes = 0; problems = 0; results = @{}; restarting = $false; folderPrivate = $false; adminSids = @() }
$report = [ordered]@{
    schemaVersion = 1
    stack = $null
    enforcement = $null
    computer = $env:COMPUTERNAME
    reportOnly = $reportOnlyMode
    startedAt = [DateTime]::UtcNow.ToString('o')
    finishedAt = $null
    status = 'failed'
    changes = [Collections.ArrayList]::new()
    drift = [Collections.ArrayList]::new()
    warnings = [Collections.ArrayList]::new()
    rebootRequired = $false
    steps = [Collections.ArrayList]::new()
    checks = [ordered]@{
        binding = [ordered]@{ site = $null; bindingInformation = $null; thumbprint = $null; subject = $null; notAfter = $null; sslFlags = $null; iisCertificateHash = $null; iisCertificateStoreName = $null }
        httpSys = $null
        anonymousEnabled = $null
        locations = @()
        mappings = @()
        trustStores = [ordered]@{ certificates = @(); nonSelfSignedInRoot = @(); clientAuthTrustMode = $null; sendTrustedIssuerList = $null }
        crl = @()
        logging = [ordered]@{ logFormat = $null; fields = $null; customFields = @() }
        reboot = [ordered]@{ pending = $false; recordedAt = $null; requestedAt = $null; reasons = @(); lastBootAt = $null; refused = $null }
        registration = [ordered]@{ source = $null; staged = $null }
    }
    error = $null
}

function Write-Log {
    # Only into the private state folder (a planted converge.log is deleted before the first line).
    param([string]$Message)
    if (-not $run.folderPrivate) { return }
    try {
        if ((Test-Path -LiteralPath $logFile) -and (Get-Item -LiteralPath $logFile).Length -gt 5242880) { Move-Item -LiteralPath $logFile -Destination "$logFile.1" -Force }
        Add-Content -LiteralPath $logFile -Value "$([DateTime]::UtcNow.ToString('o')) $Message" -Encoding UTF8
    } catch { Write-Verbose "log not written: $($_.Exception.Message)" }
}

function Invoke-Converge {
    # Records drift; in converge mode runs the fix and records the change. Report-only changes nothing.
    # -Optional: a fix that fails is a warning, not a failure (for what only helps an operator).
    param([string]$What, [scriptblock]$Fix, [switch]$Optional)
    [void]$report.drift.Add($What)
    Write-Log "drift: $What"
    if ($reportOnlyMode) { return }
    try { $null = & $Fix }
    catch {
        if (-not $Optional) { throw }
        [void]$report.warnings.Add("not changed: $What ($($_.Exception.Message))")
        Write-Log "not changed: $What"
        return
    }
    [void]$report.changes.Add($What)
    Write-Log "changed: $What"
}

function Invoke-ConvergeAll {
    # Several differences fixed by one all-or-nothing action (one IIS commit): all changed or none.
    param([string[]]$What, [scriptblock]$Fix)
    foreach ($item in $What) { [void]$report.drift.Add($item); Write-Log "drift: $item" }
    if ($reportOnlyMode -or $What.Count -eq 0) { return }
    $null = & $Fix
    foreach ($item in $What) { [void]$report.changes.Add($item); Write-Log "changed: $item" }
}

function Add-Problem {
    # Something the script cannot fix by itself: the step (and the run) ends as failed and names it.
    param([string]$Message)
    [void]$problems.Add($Message)
    Write-Log "problem: $Message"
}

function Add-StepResult {
    param([string]$Name, [string]$Status, $Message)
    $run.results[$Name] = $Status
    $step = [ordered]@{ name = $Name; status = $Status; error = $Message }
    [void]$report.steps.Add($step)
    Write-Log "step ${Name}: $Status $Message"
}

function Start-Step {
    # $true when the step may run: every step it needs ended ok, changed or drift. Otherwise the
    # step is recorded as skipped, naming what it waited for.
    # 'name?' needs that step only when it ran. After the installer started a restart (1641)
    # nothing more runs: Windows is going down.
    param([string]$Name, [string[]]$Requires = @())
    $missing = @(foreach ($need in $Requires) {
        $optional = $need.EndsWith('?')
        $need = $need.TrimEnd('?')
        $seen = $run.results[$need]
        if ($optional -and -not $seen) { continue }
        if (@('ok', 'changed', 'drift') -notcontains $seen) { if (-not $seen) { $seen = 'not run' }; "$need ($seen)" }
    })
    if ($run.restarting) { $missing += 'Windows to stay up (the installer started a restart)' }
    if ($missing.Count -gt 0) {
        Add-StepResult -Name $Name -Status 'skipped' -Message "not run: it needs $($missing -join ', ')"
        return $false
    }
    $run.step = $Name
    $run.drift = $report.drift.Count
    $run.changes = $report.changes.Count
    $run.problems = $problems.Count
    return $true
}

function Complete-Step {
    # failed (an exception, or a problem found during the step), changed, drift (report-only) or ok.
    param([string]$Name, $Failure)
    $status = 'ok'
    $message = $null
    $found = @($problems | Select-Object -Skip $run.problems)
    if ($null -ne $Failure) {
        $status = 'failed'
        $message = (@("$($Failure.Exception.Message) (line $($Failure.InvocationInfo.ScriptLineNumber))") + $found) -join ' | '
    } elseif ($found.Count -gt 0) {
        $status = 'failed'
        $message = $found -join ' | '
    } elseif ($report.changes.Count -gt $run.changes) { $status = 'changed' }
    elseif ($report.drift.Count -gt $run.drift) { $status = 'drift' }
    $run.step = $null
    Add-StepResult -Name $Name -Status $status -Message $message
}

function Assert-Match {
    param([string]$Value, [string]$Pattern, [string]$What)
    if ($Value -cnotmatch $Pattern) { throw "desired state: $What '$Value' is not valid (expected $Pattern)" }
}

function ConvertTo-Bool {
    param($Value)
    if ($Value -is [bool]) { return $Value }
    return ("$Value" -eq 'True')
}

function ConvertTo-NetshSwitch {
    param($Value)
    if (ConvertTo-Bool $Value) { return 'enable' }
    return 'disable'
}

function Read-DesiredState {
    if ($EncodedState) { $text = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($EncodedState)) }
    elseif ($StatePath) { $text = [IO.File]::ReadAllText($StatePath, [Text.Encoding]::UTF8) }
    else { throw 'no desired state: pass -StatePath FILE or -EncodedState TEXT' }
    return (ConvertFrom-Json -InputObject $text.TrimStart([char]0xFEFF))
}

function Get-SecretValue {
    param([string]$SecretId)
    if ($localMode) { throw "-Local: secret $SecretId is not read (no AWS call)" }
    return (Get-SECSecretValue -SecretId $SecretId -Region $state.region)
}

function Read-PasswordFile {
    # -Local: a password from a file, without the line break that ends it.
    param([string]$Path, [string]$Name)
    if (-not $Path) { throw "-Local: give -$Name FILE" }
    return [IO.File]::ReadAllText($Path).TrimEnd("`r", "`n")
}

# --- the state folder: SYSTEM and Administrators only

function New-PrivateSecurity {
    # Protected (nothing inherited from ProgramData, where every local user may create files and
    # would own what they create) and open to SYSTEM and Administrators only.
    param([switch]$File)
    if ($File) { $security = New-Object -TypeName System.Security.AccessControl.FileSecurity }
    else { $security = New-Object -TypeName System.Security.AccessControl.DirectorySecurity }
    $security.SetAccessRuleProtection($true, $false)
    foreach ($sid in $trustedSids) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        if ($File) { $rule = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList $identity, 'FullControl', 'Allow' }
        else { $rule = New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList $identity, 'FullControl', 'ContainerInherit, ObjectInherit', 'None', 'Allow' }
        $security.AddAccessRule($rule)
    }
    return $security
}

function Get-PrivacyProblem {
    # Why an item is not private ($null when it is): a link, an owner other than SYSTEM or
    # Administrators, a rule that lets anyone else in, or (the folder itself) inherited rules.
    param($Item, [switch]$Top)
    if ($Item.Attributes -band [IO.FileAttributes]::ReparsePoint) { return 'a link (reparse point)' }
    $acl = Get-Acl -LiteralPath $Item.FullName
    $owner = $acl.GetOwner([Security.Principal.SecurityIdentifier]).Value
    if ($trustedSids -notcontains $owner -and $run.adminSids -notcontains $owner) { return "owned by $owner" }
    if ($Top -and -not $acl.AreAccessRulesProtected) { return 'inherits the ACL of ProgramData' }
    foreach ($rule in @($acl.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]))) {
        if ("$($rule.AccessControlType)" -eq 'Allow' -and $trustedSids -notcontains $rule.IdentityReference.Value) { return "open to $($rule.IdentityReference.Value)" }
    }
    return $null
}

function Get-StateItem {
    # Every item below the folder; links are listed, never followed.
    param([string]$Path)
    foreach ($item in @(Get-ChildItem -LiteralPath $Path -Force)) {
        $item
        if ($item.PSIsContainer -and -not ($item.Attributes -band [IO.FileAttributes]::ReparsePoint)) { Get-StateItem -Path $item.FullName }
    }
}

function Remove-StateItem {
    # A link is removed itself, never what it points to.
    param($Item)
    if ($Item.PSIsContainer) { [IO.Directory]::Delete($Item.FullName, -not ($Item.Attributes -band [IO.FileAttributes]::ReparsePoint)) }
    else { [IO.File]::Delete($Item.FullName) }
}

function Initialize-StateFolder {
    # Whoever creates the folder first (user data, the SSM bootstrap, this script) creates it
    # private. Every run checks the folder and everything in it: an item someone else owns (or a
    # link) is deleted, since the folder holds only what this deployment recreates (markers, logs,
    # downloads, the account record); an item of ours that is open to others gets the private ACL.
    # Report-only repairs nothing: then nothing is logged and the account record is not read (the
    # steps that need the folder still run, reading only); a folder that cannot be repaired fails
    # this step and those steps are skipped.
    # Owners may also be members of Administrators (an administrator's manual run); access rules
    # stay SYSTEM and Administrators only.
    try { $run.adminSids = @(Get-LocalGroupMember -SID 'S-1-5-32-544' | ForEach-Object { "$($_.SID)" }) }
    catch { [void]$report.warnings.Add("the members of Administrators could not be listed ($($_.Exception.Message)): only SYSTEM and Administrators own state files") }
    if (-not (Test-Path -LiteralPath $dataDir)) {
        if ($reportOnlyMode) { $run.folderPrivate = $false; return }
        $null = [IO.Directory]::CreateDirectory($dataDir, (New-PrivateSecurity))
    }
    $top = Get-Item -LiteralPath $dataDir -Force
    $why = Get-PrivacyProblem -Item $top -Top
    if ($why) {
        Invoke-Converge "state folder $dataDir is not private: $why" {
            if ($top.Attributes -band [IO.FileAttributes]::ReparsePoint) {
                Remove-StateItem -Item $top
                $null = [IO.Directory]::CreateDirectory($dataDir, (New-PrivateSecurity))
            } else {
                $security = New-PrivateSecurity
                $security.SetOwner((New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList 'S-1-5-32-544'))
                Set-Acl -LiteralPath $dataDir -AclObject $security
            }
        }
    }
    foreach ($item in @(Get-StateItem -Path $dataDir)) {
        if (-not (Test-Path -LiteralPath $item.FullName)) { continue }  # inside a folder removed before
        $itemWhy = Get-PrivacyProblem -Item $item
        if (-not $itemWhy) { continue }
        if ($itemWhy -match '^(owned by|a link)') {
            Invoke-Converge "$($item.FullName) is $($itemWhy): deleted (made by someone else)" { Remove-StateItem -Item $item }
        } else {
            Invoke-Converge "$($item.FullName) is $($itemWhy): made private" { Set-Acl -LiteralPath $item.FullName -AclObject (New-PrivateSecurity -File:(-not $item.PSIsContainer)) }
        }
    }
    $run.folderPrivate = -not $reportOnlyMode -or ($report.drift.Count -eq $run.drift)
}

# --- restarts: recorded on disk, pending until the instance has started after the change

function Get-LastBootTime {
    return (Get-CimInstance -ClassName 'Win32_OperatingSystem' -Property 'LastBootUpTime').LastBootUpTime.ToUniversalTime()
}

function Read-RebootMarker {
    if (-not (Test-Path -LiteralPath $rebootMarker)) { return $null }
    try { return (ConvertFrom-Json -InputObject (Get-Content -LiteralPath $rebootMarker -Raw)) }
    catch {
        # A marker that cannot be read is moved aside (a damaged file must not fail every run).
        Move-Item -LiteralPath $rebootMarker -Destination "$rebootMarker.unreadable" -Force
        [void]$report.warnings.Add("the restart marker could not be read ($($_.Exception.Message)); moved to $rebootMarker.unreadable")
        return $null
    }
}

function Write-RebootMarker {
    param([string]$RecordedAt, [string]$RequestedAt, [string[]]$Reasons)
    if (-not $run.folderPrivate) { throw "the state folder $dataDir is not private: no restart is recorded there" }
    $marker = [ordered]@{ recordedAt = $RecordedAt; requestedAt = $RequestedAt; reasons = @($Reasons) }
    if (-not $RequestedAt) { $marker.requestedAt = $null }
    Set-Content -LiteralPath $rebootMarker -Value (ConvertTo-Json -InputObject $marker -Compress) -Encoding UTF8
}

function Register-Reboot {
    # A change Windows applies only at start-up (SChannel settings, a feature, an installer).
    # -AlreadyRequested: something else (msiexec 1641) has started the restart itself.
    param([string]$Reason, [switch]$AlreadyRequested)
    $reasons = [Collections.ArrayList]::new()
    $marker = Read-RebootMarker
    if ($null -ne $marker) { foreach ($earlier in @($marker.reasons)) { if ($earlier) { [void]$reasons.Add([string]$earlier) } } }
    [void]$reasons.Add($Reason)
    $now = [DateTime]::UtcNow.ToString('o')
    $requested = $null
    if ($AlreadyRequested) { $requested = $now }
    Write-RebootMarker -RecordedAt $now -RequestedAt $requested -Reasons @($reasons)
    $report.rebootRequired = $true
    $report.checks.reboot.pending = $true
    $report.checks.reboot.recordedAt = $now
    $report.checks.reboot.requestedAt = $requested
    $report.checks.reboot.reasons = @($reasons)
    Write-Log "restart needed: $Reason"
}

function Read-RebootState {
    # Pending while the last start of Windows is older than the last change that needs a restart.
    $boot = Get-LastBootTime
    $report.checks.reboot.lastBootAt = $boot.ToString('o')
    $marker = Read-RebootMarker
    if ($null -eq $marker) { return }
    $recorded = [DateTime]::Parse([string]$marker.recordedAt, [Globalization.CultureInfo]::InvariantCulture, [Globalization.DateTimeStyles]::RoundtripKind).ToUniversalTime()
    if ($boot -gt $recorded) {
        Write-Log "the restart needed since $($marker.recordedAt) happened (Windows started $($boot.ToString('o')))"
        if (-not $reportOnlyMode) { Remove-Item -LiteralPath $rebootMarker -Force }
        return
    }
    $report.rebootRequired = $true
    $report.checks.reboot.pending = $true
    $report.checks.reboot.recordedAt = [string]$marker.recordedAt
    $report.checks.reboot.requestedAt = $marker.requestedAt
    $report.checks.reboot.reasons = @($marker.reasons)
}

function Read-RebootHistory {
    # The restart requests of the last 24 hours: @{ at; reasons }. Assigned before @(): Windows
    # PowerShell 5.1 sends a JSON array down the pipeline as ONE object. A history that cannot be
    # read is moved aside and counts as a spent budget (no restart loop can hide behind it).
    if (-not (Test-Path -LiteralPath $rebootHistory)) { return @() }
    $since = [DateTime]::UtcNow.AddHours(-24)
    $recent = [Collections.ArrayList]::new()
    try {
        $parsed = ConvertFrom-Json -InputObject (Get-Content -LiteralPath $rebootHistory -Raw)
        foreach ($entry in @($parsed)) {
            $at = [DateTime]::MinValue
            if (-not [DateTime]::TryParseExact([string]$entry.at, 'o', [Globalization.CultureInfo]::InvariantCulture, [Globalization.DateTimeStyles]::RoundtripKind, [ref]$at)) { throw "entry time '$($entry.at)' is not ISO 8601" }
            if ($at.ToUniversalTime() -gt $since) { [void]$recent.Add([ordered]@{ at = [string]$entry.at; reasons = @($entry.reasons | ForEach-Object { [string]$_ }) }) }
        }
    } catch {
        $aside = "$rebootHistory.unreadable"
        Move-Item -LiteralPath $rebootHistory -Destination $aside -Force
        [void]$report.warnings.Add("the restart history could not be read ($($_.Exception.Message)); moved to $aside and counted as a spent restart budget")
        $spent = [Collections.ArrayList]::new()
        for ($slot = 0; $slot -lt $rebootBudget; $slot++) { [void]$spent.Add([ordered]@{ at = [DateTime]::UtcNow.ToString('o'); reasons = @('unreadable restart history') }) }
        return @($spent)
    }
    return @($recent)
}

function Get-ComputerGpoName {
    # The Group Policy Objects applied to this computer, by name (who may rewrite a value at start-up).
    $key = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Group Policy\State\Machine\GPO-List'
    if (-not (Test-Path -LiteralPath $key)) { return @() }
    return @(Get-ChildItem -LiteralPath $key | ForEach-Object { (Get-ItemProperty -LiteralPath $_.PSPath -Name 'DisplayName' -ErrorAction SilentlyContinue).DisplayName } | Where-Object { $_ })
}

function Request-Reboot {
    # 'requested' once per recorded change (the run exits 3010 and SSM Agent restarts the
    # instance), 'waiting' when it was asked for already, 'refused' past the budget: then the run
    # fails naming what keeps changing back, and asks again only when older requests age out.
    $marker = Read-RebootMarker
    if ($null -eq $marker -or $marker.requestedAt) { return 'waiting' }
    $recent = @(Read-RebootHistory)
    $reasons = @($marker.reasons | ForEach-Object { [string]$_ })
    if ($recent.Count -ge $rebootBudget) {
        $earlier = @($recent | ForEach-Object { @($_.reasons) } | ForEach-Object { [string]$_ })
        $repeated = @($reasons | Where-Object { $earlier -contains $_ })
        if ($repeated.Count -eq 0) { $repeated = $reasons }
        $gpos = @(Get-ComputerGpoName)
        $who = 'no Group Policy Object is applied to this computer: look for a security baseline, DSC or another configuration agent'
        if ($gpos.Count -gt 0) { $who = "Group Policy Objects applied to this computer: $($gpos -join ', ') (gpresult /scope computer /h)" }
        $report.checks.reboot.refused = "$($recent.Count) restarts asked for in 24 hours (at $(@($recent | ForEach-Object { $_.at }) -join ', ')); no more are asked for: $($repeated -join '; ') keeps changing back after each restart. Who may set it at start-up: $who"
        return 'refused'
    }
    $now = [DateTime]::UtcNow.ToString('o')
    $history = [Collections.ArrayList]::new()
    foreach ($entry in $recent) { [void]$history.Add($entry) }
    [void]$history.Add([ordered]@{ at = $now; reasons = $reasons })
    Set-Content -LiteralPath $rebootHistory -Value (ConvertTo-Json -InputObject @($history) -Depth 4 -Compress) -Encoding UTF8
    Write-RebootMarker -RecordedAt ([string]$marker.recordedAt) -RequestedAt $now -Reasons $reasons
    $report.checks.reboot.requestedAt = $now
    return 'requested'
}

# --- features

function Wait-UserData {
    # First boot: user data (EC2Launch v2) may still be installing the role services. Wait for it,
    # at most 10 minutes; a marker older than an hour is left over from an interrupted boot.
    $deadline = [DateTime]::UtcNow.AddMinutes(10)
    $waited = 0
    while ((Test-Path -LiteralPath $userDataMarker) -and [DateTime]::UtcNow -lt $deadline) {
        if (([DateTime]::UtcNow - (Get-Item -LiteralPath $userDataMarker).LastWriteTimeUtc).TotalMinutes -gt 60) { break }
        Start-Sleep -Seconds 15
        $waited += 15
    }
    if ($waited -gt 0) { [void]$report.warnings.Add("waited $waited s for user data to finish installing the role services") }
    if (Test-Path -LiteralPath $userDataMarker) { [void]$report.warnings.Add('user data is still running or was interrupted: this run installs the missing role services itself') }
}

function Get-FeatureGap {
    param([string[]]$Install, [string[]]$Remove)
    $known = @(Get-WindowsFeature -Name ($Install + $Remove))
    $unknown = @($Install + $Remove | Where-Object { @($known.Name) -notcontains $_ })
    if ($unknown.Count -gt 0) { throw "desired state names unknown Windows features: $($unknown -join ', ')" }
    return @{
        missing = @($known | Where-Object { $Install -contains $_.Name -and -not $_.Installed } | ForEach-Object { $_.Name })
        extra = @($known | Where-Object { $Remove -contains $_.Name -and $_.Installed } | ForEach-Object { $_.Name })
    }
}

function Sync-Features {
    $install = @($state.features.install)
    $remove = @($state.features.remove)
    $gap = Get-FeatureGap -Install $install -Remove $remove
    if ($gap.missing.Count -gt 0) {
        Wait-UserData
        $gap = Get-FeatureGap -Install $install -Remove $remove
    }
    if ($gap.missing.Count -gt 0) {
        Invoke-Converge "Windows features not installed: $($gap.missing -join ', ')" {
            $result = Install-WindowsFeature -Name $gap.missing
            if (-not $result.Success) { throw "Install-WindowsFeature $($gap.missing -join ', '): $($result.ExitCode)" }
            if ("$($result.RestartNeeded)" -eq 'Yes') { Register-Reboot -Reason "Install-WindowsFeature $($gap.missing -join ', ')" }
        }
    }
    if ($gap.extra.Count -gt 0) {
        Invoke-Converge "Windows features that must be absent: $($gap.extra -join ', ')" {
            $result = Uninstall-WindowsFeature -Name $gap.extra
            if (-not $result.Success) { throw "Uninstall-WindowsFeature $($gap.extra -join ', '): $($result.ExitCode)" }
            if ("$($result.RestartNeeded)" -eq 'Yes') { Register-Reboot -Reason "Uninstall-WindowsFeature $($gap.extra -join ', ')" }
        }
    }
}

function Import-IisModule {
    if (-not (Get-Module -ListAvailable -Name 'WebAdministration')) { throw 'the WebAdministration module is missing (role service Web-Scripting-Tools): IIS cannot be read or configured' }
    Import-Module -Name 'WebAdministration'
    # The lock-down writes through Microsoft.Web.Administration (in inetsrv with IIS itself).
    $assembly = Join-Path $env:windir 'System32\inetsrv\Microsoft.Web.Administration.dll'
    if (-not (Test-Path -LiteralPath $assembly)) { throw "$assembly is missing: IIS is not installed" }
    $null = [Reflection.Assembly]::LoadFrom($assembly)
}

# --- lock-down: mapped account, mappings and the locked sections, in one IIS commit

function New-RandomPassword {
    # 40 characters from a 70-character alphabet (about 245 bits), made and kept on this instance.
    $alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#%+-.:=?@^_~'
    $limit = 256 - (256 % $alphabet.Length)
    $rng = New-Object -TypeName System.Security.Cryptography.RNGCryptoServiceProvider
    try {
        do {
            $bytes = New-Object -TypeName System.Byte[] -ArgumentList 96
            $rng.GetBytes($bytes)
            $text = -join @($bytes | Where-Object { $_ -lt $limit } | ForEach-Object { $alphabet[$_ % $alphabet.Length] } | Select-Object -First 40)
        } while ($text.Length -lt 40 -or $text -cnotmatch '[A-Z]' -or $text -cnotmatch '[a-z]' -or $text -notmatch '[0-9]' -or $text -notmatch '[^A-Za-z0-9]')
        return $text
    } finally { $rng.Dispose() }
}

function Use-DataProtection {
    # ProtectedData is in System.Security.dll, which Windows PowerShell 5.1 does not load by itself.
    $null = [Reflection.Assembly]::Load('System.Security, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b03f5f7f11d50a3a')
}

function Read-AccountRecord {
    # The local account's password as this script last set it, or $null. DPAPI user scope under
    # LocalSystem (the SSM Agent's account): only SYSTEM can decrypt it; nothing rests on a value
    # written in this script. Not read from a state folder that is not private.
    if (-not $run.folderPrivate -or -not (Test-Path -LiteralPath $accountRecord)) { return $null }
    Use-DataProtection
    try { $plain = [Security.Cryptography.ProtectedData]::Unprotect([IO.File]::ReadAllBytes($accountRecord), $null, [Security.Cryptography.DataProtectionScope]::CurrentUser) }
    catch {
        # Unreadable (another machine's image, another account's record, damaged): treated as no record.
        [void]$report.warnings.Add("the record of the mapped account's password could not be read ($($_.Exception.Message)): treated as missing")
        return $null
    }
    return [Text.Encoding]::UTF8.GetString($plain)
}

function Save-AccountRecord {
    # Written only into the private state folder, as a new file created with its ACL (SYSTEM and
    # Administrators) by this run: a file someone else made first is deleted, never reused.
    param([string]$Value)
    if (-not $run.folderPrivate) { throw "the state folder $dataDir is not private: the account's password is not recorded there" }
    Use-DataProtection
    $blob = [Security.Cryptography.ProtectedData]::Protect([Text.Encoding]::UTF8.GetBytes($Value), $null, [Security.Cryptography.DataProtectionScope]::CurrentUser)
    $temporary = "$accountRecord.new"
    if (Test-Path -LiteralPath $temporary) { [IO.File]::Delete($temporary) }
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList $temporary, ([IO.FileMode]::CreateNew), ([Security.AccessControl.FileSystemRights]::FullControl), ([IO.FileShare]::None), 4096, ([IO.FileOptions]::WriteThrough), (New-PrivateSecurity -File)
    try { $stream.Write($blob, 0, $blob.Length) } finally { $stream.Dispose() }
    Move-Item -LiteralPath $temporary -Destination $accountRecord -Force
}

function Open-ServerManager {
    # Microsoft.Web.Administration, as Microsoft's many-to-one sample uses it (IIS configuration
    # reference, iisClientCertificateMappingAuthentication/manyToOneMappings): every change is made
    # in memory and reaches applicationHost.config with one CommitChanges().
    return (New-Object -TypeName Microsoft.Web.Administration.ServerManager)
}

function Get-ServedPath {
    # 'Default Web Site/ManageSoftRL' -> @{ site; path = '/ManageSoftRL' } when that site (and
    # application or virtual directory) exists; $null before it does (applicationHost.config's
    # location applies then).
    param($Manager, [string]$Location)
    $parts = @($Location -split '/', 2)
    $where = @{ site = $parts[0]; path = '/' }
    if ($parts.Count -gt 1) { $where.path = "/$($parts[1])" }
    # ManageSoftDL and ManageSoftRL may be applications or virtual directories of the root one.
    $iisSite = $Manager.Sites[$where.site]
    if ($null -eq $iisSite) { return $null }
    if ($where.path -eq '/' -or $null -ne $iisSite.Applications[$where.path]) { return $where }
    $rootApplication = $iisSite.Applications['/']
    if ($null -ne $rootApplication -and $null -ne $rootApplication.VirtualDirectories[$where.path]) { return $where }
    return $null
}

function ConvertTo-IisNumber {
    # An enum or flags value as its number, from a name list ('Ssl,SslNegotiateCert'), a number, or
    # an enum object: MWA and WebAdministration read enums back either way (IIS_schema.xml values).
    param([string]$Attribute, $Value)
    $names = $iisEnums[$Attribute]
    if ($null -eq $names) { throw "no enum table for $Attribute" }
    $text = "$Value".Trim()
    if ($text -match '^[0-9]+$') { return [int]$text }
    $total = 0
    foreach ($part in @($text -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ })) {
        if ($null -eq $names[$part]) { throw "$Attribute value '$part' is not one of $(@($names.Keys | Sort-Object) -join ', ')" }
        $total = $total -bor [int]$names[$part]
    }
    return $total
}

function ConvertFrom-IisNumber {
    # The name(s) of an enum or flags number, for the report (flags: comma-separated, sorted).
    param([string]$Attribute, $Value)
    $number = ConvertTo-IisNumber -Attribute $Attribute -Value $Value
    $names = $iisEnums[$Attribute]
    $exact = @($names.Keys | Where-Object { [int]$names[$_] -eq $number })
    if ($exact.Count -gt 0) { return [string]$exact[0] }
    return (@($names.Keys | Where-Object { [int]$names[$_] -ne 0 -and ($number -band [int]$names[$_]) -eq [int]$names[$_] } | Sort-Object) -join ',')
}

function Get-HeldPassword {
    # The distinct passwords the mappings of this user hold now (MWA decrypts them for SYSTEM).
    param($Section, [string]$UserName)
    $held = [Collections.ArrayList]::new()
    foreach ($collection in @('manyToOneMappings', 'oneToOneMappings')) {
        foreach ($item in @($Section.GetCollection($collection))) {
            $value = [string]$item.GetAttributeValue('password')
            if ($value -and [string]$item.GetAttributeValue('userName') -eq $UserName -and -not $held.Contains($value)) { [void]$held.Add($value) }
        }
    }
    return $held
}

function Test-LocalLockout {
    # A lockout policy (a security baseline sets one) can lock the local account: IIS then answers 401.1.
    param([string]$Name)
    $found = @(Get-CimInstance -ClassName 'Win32_UserAccount' -Filter 'LocalAccount=True' | Where-Object { $_.Name -eq $Name })
    if ($found.Count -gt 0 -and $found[0].Lockout) { Add-Problem "local user $Name is locked out (account lockout policy): devices get 401.1 until it unlocks or an administrator unlocks it" }
}

function Get-LockedOutLogon {
    # Logons of the mapped account that Windows refused in the last hour because it is locked out:
    # Security event 4625 with Status or SubStatus 0xC0000234. IIS answers those devices 401.1.
    param([string]$Name)
    try { $events = @(Get-WinEvent -FilterHashtable @{ LogName = 'Security'; Id = 4625; StartTime = (Get-Date).AddHours(-1) } -MaxEvents 500 -ErrorAction Stop) }
    catch { return @() }  # no such event (Get-WinEvent throws when none match), or no Security log access
    return @(foreach ($logon in $events) {
        $data = @{}
        foreach ($eventField in @(([xml]$logon.ToXml()).Event.EventData.Data)) { $data[[string]$eventField.Name] = [string]$eventField.'#text' }
        if ($data['TargetUserName'] -eq $Name -and @($data['Status'], $data['SubStatus']) -contains '0xc0000234') { $logon.TimeCreated.ToUniversalTime().ToString('o') }
    })
}

function Get-MappedAccount {
    # The account the mappings log devices on as: @{ type; name; userName; password; rewrite; why }.
    # The password is the one the mappings already hold. A local account gets a password only when
    # it is created, or when no mapping holds one and none is recorded (then no mapping can be
    # using it); a rewrite of the mappings never changes it (docs/iis-mtls.md).
    param($Section)
    $account = $state.mappedAccount
    if ($account.type -eq 'domain') {
        Assert-Match $account.domain '^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$' 'mappedAccount.domain'
        $userName = "$($account.domain)\$($account.name)"
        $locked = @(Get-LockedOutLogon -Name $account.name)
        if ($locked.Count -gt 0) { Add-Problem "domain account $userName is locked out: $($locked.Count) logons refused (0xC0000234) in the last hour, the last at $($locked[0]); devices get 401.1 until it is unlocked in Active Directory" }
        if ($localMode) { $secret = @{ SecretString = (Read-PasswordFile -Path $AccountPasswordPath -Name 'AccountPasswordPath'); VersionId = '-AccountPasswordPath' } }
        else { $secret = Get-SecretValue -SecretId $account.passwordSecretArn }
        $held = @(Get-HeldPassword -Section $Section -UserName $userName)
        $result = @{ type = 'domain'; name = $account.name; userName = $userName; password = $secret.SecretString; rewrite = $false; why = '' }
        if ($held.Count -ne 1 -or $held[0] -cne $secret.SecretString) {
            $result.rewrite = $true
            $result.why = "the mappings do not hold the account's password ($($secret.VersionId))"
        }
        return $result
    }
    if ($account.type -ne 'local') { throw "desired state: mappedAccount.type '$($account.type)' is not local or domain" }
    $held = @(Get-HeldPassword -Section $Section -UserName $account.name)
    $recorded = Read-AccountRecord
    $result = @{ type = 'local'; name = $account.name; userName = $account.name; password = $null; rewrite = $false; why = '' }
    if ($held.Count -gt 0) { $result.password = $held[0] } elseif ($recorded) { $result.password = $recorded }
    if ($held.Count -gt 1) { $result.rewrite = $true; $result.why = "the mappings of $($account.name) hold different passwords" }
    $user = Get-LocalUser -Name $account.name -ErrorAction SilentlyContinue
    if ($null -eq $user) {
        Invoke-Converge "local user $($account.name) for the certificate mappings is missing" {
            if (-not $result.password) { $result.password = New-RandomPassword }
            Save-AccountRecord -Value $result.password  # first: a failure here leaves no account behind
            $secure = ConvertTo-SecureString -String $result.password -AsPlainText -Force
            $null = New-LocalUser -Name $account.name -Password $secure -PasswordNeverExpires -AccountNeverExpires -UserMayNotChangePassword -Description 'FlexNet beacon IIS certificate mapping account'
        }
        if ($held.Count -eq 0) { $result.rewrite = $true; $result.why = "account $($account.name) is new" }
        return $result
    }
    if (-not $user.Enabled) { Invoke-Converge "local user $($account.name) is disabled" { Enable-LocalUser -Name $account.name } }
    if ($null -ne $user.PasswordExpires) { Invoke-Converge "local user $($account.name) has an expiring password" { Set-LocalUser -Name $account.name -PasswordNeverExpires $true } }
    if (@(Get-LocalGroupMember -SID 'S-1-5-32-544' | Where-Object { $_.SID -eq $user.SID }).Count -gt 0) {
        Invoke-Converge "local user $($account.name) is in Administrators" { Remove-LocalGroupMember -SID 'S-1-5-32-544' -Member $account.name }
    }
    Test-LocalLockout -Name $account.name
    if ($held.Count -gt 0 -and $recorded -cne $held[0]) {
        # The account may not have what the mappings hold (no record yet, or changed by hand): make
        # the account match IIS, never the other way round. Same value: nothing changes for devices.
        Invoke-Converge "local user $($account.name): set to the password the mappings hold (no record of it, or a different one)" {
            Set-LocalUser -Name $account.name -Password (ConvertTo-SecureString -String $result.password -AsPlainText -Force)
            Save-AccountRecord -Value $result.password
        }
    } elseif ($held.Count -eq 0) {
        if (-not $recorded) {
            Invoke-Converge "local user $($account.name): its password is not known (no mapping holds it, none recorded): a new one is set" {
                $result.password = New-RandomPassword
                Save-AccountRecord -Value $result.password  # first: the account never has a password no record names
                Set-LocalUser -Name $account.name -Password (ConvertTo-SecureString -String $result.password -AsPlainText -Force)
            }
        }
        $result.rewrite = $true
        $result.why = "no mapping holds the password of $($account.name)"
    }
    return $result
}

function Assert-MappingName {
    # Names are the collection's unique key (IIS compares them without case): plain, and distinct.
    param([string[]]$Names)
    $seen = @{}
    foreach ($name in $Names) {
        if (-not $name -or $name -match "['\[\]\x00-\x1f]") { throw "desired state: mapping name '$name' must be non-empty without ' [ ] or control characters" }
        if ($seen.ContainsKey($name.ToLowerInvariant())) { throw "desired state: two mappings are named '$name' (names are unique, without case): IIS was not touched" }
        $seen[$name.ToLowerInvariant()] = $true
    }
}

function Read-ManyToOne {
    param($Section)
    foreach ($item in @($Section.GetCollection('manyToOneMappings'))) {
        [ordered]@{ name = [string]$item.GetAttributeValue('name'); description = [string]$item.GetAttributeValue('description'); enabled = (ConvertTo-Bool $item.GetAttributeValue('enabled'))
            permissionMode = (ConvertFrom-IisNumber -Attribute 'permissionMode' -Value $item.GetAttributeValue('permissionMode')); userName = [string]$item.GetAttributeValue('userName')
            rules = @(foreach ($rule in @($item.GetCollection('rules'))) {
                [ordered]@{ certificateField = (ConvertFrom-IisNumber -Attribute 'certificateField' -Value $rule.GetAttributeValue('certificateField')); certificateSubField = [string]$rule.GetAttributeValue('certificateSubField')
                    matchCriteria = [string]$rule.GetAttributeValue('matchCriteria'); compareCaseSensitive = (ConvertTo-Bool $rule.GetAttributeValue('compareCaseSensitive')) }
            }) }
    }
}

function Get-WantedManyToOne {
    param([string]$UserName)
    $wanted = @(foreach ($desiredMapping in $state.authentication.clientCertificateMapping.manyToOneMappings) {
        [ordered]@{ name = [string]$desiredMapping.name; description = [string]$desiredMapping.description; enabled = [bool]$desiredMapping.enabled
            permissionMode = [string]$desiredMapping.permissionMode; userName = $UserName
            rules = @(foreach ($desiredRule in $desiredMapping.rules) {
                [ordered]@{ certificateField = [string]$desiredRule.certificateField; certificateSubField = [string]$desiredRule.certificateSubField
                    matchCriteria = [string]$desiredRule.matchCriteria; compareCaseSensitive = [bool]$desiredRule.compareCaseSensitive }
            }) }
    })
    Assert-MappingName -Names @($wanted | ForEach-Object { $_.name })
    return $wanted
}

function Set-ManyToOne {
    # The whole collection again, in the desired order (IIS takes the first mapping that matches).
    param($Section, [object[]]$Wanted, [string]$Password)
    $collection = $Section.GetCollection('manyToOneMappings')
    $collection.Clear()
    foreach ($new in $Wanted) {
        $element = $collection.CreateElement('add')
        foreach ($name in @('name', 'description', 'enabled', 'permissionMode', 'userName')) { $element.SetAttributeValue($name, $new[$name]) }
        $element.SetAttributeValue('password', $Password)
        $rules = $element.GetCollection('rules')
        foreach ($newRule in $new.rules) {
            $rule = $rules.CreateElement('add')
            foreach ($name in @('certificateField', 'certificateSubField', 'matchCriteria', 'compareCaseSensitive')) { $rule.SetAttributeValue($name, $newRule[$name]) }
            $null = $rules.Add($rule)
        }
        $null = $collection.Add($element)
    }
}

function Sync-OneToOne {
    # Compared by certificate: only the difference is written (5,000 devices: one dictionary pass
    # and one element operation per changed device, in memory; one commit). Returns what differs.
    # -Plan (report-only): only counts.
    param($Section, [string]$UserName, [string]$Password, [bool]$Rewrite, [switch]$Plan)
    $collection = $Section.GetCollection('oneToOneMappings')
    # Base64 is case-sensitive; a PowerShell @{} is not: ordinal tables.
    $wanted = New-Object -TypeName System.Collections.Hashtable -ArgumentList ([StringComparer]::Ordinal)
    foreach ($device in $state.authentication.clientCertificateMapping.oneToOneMappings) { $wanted[[string]$device.certificate] = [bool]$device.enabled }
    $present = New-Object -TypeName System.Collections.Hashtable -ArgumentList ([StringComparer]::Ordinal)
    $stale = [Collections.ArrayList]::new()
    foreach ($item in @($collection)) {
        $certificate = [string]$item.GetAttributeValue('certificate')
        if (-not $wanted.ContainsKey($certificate) -or $present.ContainsKey($certificate)) { [void]$stale.Add($item); continue }
        $present[$certificate] = $item
    }
    $added = @($wanted.Keys | Where-Object { -not $present.ContainsKey($_) })
    $updated = @($present.Keys | Where-Object {
        $item = $present[$_]
        $Rewrite -or (ConvertTo-Bool $item.GetAttributeValue('enabled')) -ne $wanted[$_] -or [string]$item.GetAttributeValue('userName') -ne $UserName
    })
    $why = @()
    if ($stale.Count -gt 0) { $why += "$($stale.Count) removed" }
    if ($added.Count -gt 0) { $why += "$($added.Count) added" }
    if ($updated.Count -gt 0) { $why += "$($updated.Count) updated" }
    if ($Plan) { return ($why -join ', ') }
    foreach ($item in $stale) { $collection.Remove($item) }
    foreach ($certificate in $updated) {
        $item = $present[$certificate]
        $item.SetAttributeValue('enabled', $wanted[$certificate])
        $item.SetAttributeValue('userName', $UserName)
        $item.SetAttributeValue('password', $Password)
    }
    foreach ($certificate in $added) {
        $element = $collection.CreateElement('add')
        $element.SetAttributeValue('certificate', $certificate)
        $element.SetAttributeValue('enabled', $wanted[$certificate])
        $element.SetAttributeValue('userName', $UserName)
        $element.SetAttributeValue('password', $Password)
        $null = $collection.Add($element)
    }
    return ($why -join ', ')
}

function Read-SettingValue {
    # One attribute as comparable data: booleans as booleans, enums and flags as their numbers.
    param($Section, [string]$Name)
    $value = $Section.GetAttributeValue($Name)
    if ($iisEnums.ContainsKey($Name)) { return (ConvertTo-IisNumber -Attribute $Name -Value $value) }
    return (ConvertTo-Bool $value)
}

function Get-WantedValue {
    param($Setting)
    if ($iisEnums.ContainsKey($Setting.name)) { return (ConvertTo-IisNumber -Attribute $Setting.name -Value $Setting.value) }
    return [bool]$Setting.value
}

function Get-LockdownSetting {
    # The section attributes the lock-down owns: mapping authentication on, anonymous off, SSL and a
    # client certificate required at the site and both applications; then file access as the worker
    # process at the two applications.
    $mapping = $state.authentication.clientCertificateMapping
    $settings = [Collections.ArrayList]::new()
    foreach ($location in $state.site.locations) {
        [void]$settings.Add(@{ location = $location; filter = $certMapFilter; name = 'enabled'; value = [bool]$mapping.enabled })
        [void]$settings.Add(@{ location = $location; filter = $certMapFilter; name = 'manyToOneCertificateMappingsEnabled'; value = [bool]$mapping.manyToOneCertificateMappingsEnabled })
        [void]$settings.Add(@{ location = $location; filter = $certMapFilter; name = 'oneToOneCertificateMappingsEnabled'; value = [bool]$mapping.oneToOneCertificateMappingsEnabled })
        [void]$settings.Add(@{ location = $location; filter = $anonymousFilter; name = 'enabled'; value = [bool]$state.authentication.anonymousEnabled })
        [void]$settings.Add(@{ location = $location; filter = $accessFilter; name = 'sslFlags'; value = [string]$state.access.sslFlags })
    }
    foreach ($application in $state.serverRuntime.locations) {
        [void]$settings.Add(@{ location = $application; filter = $runtimeFilter; name = 'authenticatedUserOverride'; value = [string]$state.serverRuntime.authenticatedUserOverride })
    }
    return $settings
}

function Set-LockdownSetting {
    # The section attributes and the section locks, in memory on $Config; returns what differs.
    param($Config, [object[]]$Settings)
    $items = [Collections.ArrayList]::new()
    foreach ($setting in $Settings) {
        $section = $Config.GetSection($setting.filter, $setting.location)
        $current = Read-SettingValue -Section $section -Name $setting.name
        if ($current -ne (Get-WantedValue -Setting $setting)) {
            $shown = $section.GetAttributeValue($setting.name)
            if ($iisEnums.ContainsKey($setting.name)) { $shown = ConvertFrom-IisNumber -Attribute $setting.name -Value $shown }
            [void]$items.Add("$($setting.filter)/@$($setting.name) at '$($setting.location)' is '$shown', desired '$($setting.value)'")
            $section.SetAttributeValue($setting.name, $setting.value)
        }
    }
    # Locked where IIS applies them: a web.config at the site or an application cannot override a
    # section whose effective overrideMode at that location is Deny (such a web.config gets 500.19).
    foreach ($lock in @($Settings | ForEach-Object { "$($_.filter)|$($_.location)" } | Select-Object -Unique)) {
        $lockFilter, $lockLocation = $lock -split '\|', 2
        $section = $Config.GetSection($lockFilter, $lockLocation)
        if ("$($section.OverrideModeEffective)" -ne 'Deny') {
            [void]$items.Add("$lockFilter at '$lockLocation' may be overridden by a web.config (overrideMode '$($section.OverrideModeEffective)')")
            $section.OverrideMode = 'Deny'
        }
    }
    return $items
}

function Read-Effective {
    # What IIS applies at each location, web.config files included (GetWebConfiguration merges
    # them): any value that differs from the desired one is an override, reported as a problem.
    param($Manager, [object[]]$Settings)
    $effective = @{}
    $apphostConfig = $Manager.GetApplicationHostConfiguration()
    foreach ($setting in $Settings) {
        $where = Get-ServedPath -Manager $Manager -Location $setting.location
        if ($null -eq $where) { continue }
        $section = $Manager.GetWebConfiguration($where.site, $where.path).GetSection($setting.filter)
        $key = "$($setting.location)|$($setting.filter)|$($setting.name)"
        $effective[$key] = $section.GetAttributeValue($setting.name)
        if ($iisEnums.ContainsKey($setting.name)) { $effective[$key] = ConvertFrom-IisNumber -Attribute $setting.name -Value $effective[$key] }
        $wanted = Get-WantedValue -Setting $setting
        # Plain drift (report-only) is already in the report: an override is a value IIS applies
        # that differs while applicationHost.config holds the desired one.
        $written = Read-SettingValue -Section $apphostConfig.GetSection($setting.filter, $setting.location) -Name $setting.name
        if ($written -eq $wanted -and (Read-SettingValue -Section $section -Name $setting.name) -ne $wanted) {
            $source = 'a web.config above it'
            if ($section.IsLocallyStored) { $source = "the web.config of '$($setting.location)'" }
            Add-Problem "$($setting.filter)/@$($setting.name) is '$($effective[$key])' where IIS applies it ('$($setting.location)'), desired '$($setting.value)': overridden by $source"
        }
    }
    return $effective
}

function Write-LockdownFallback {
    # The mapping rewrite failed: commit the section settings alone (certificate required,
    # anonymous off in require mode): a device whose mapping is missing gets 401.2, nobody gets in.
    param([object[]]$Settings)
    if ($reportOnlyMode) { return 0 }
    $fallback = Open-ServerManager
    try {
        $items = @(Set-LockdownSetting -Config $fallback.GetApplicationHostConfiguration() -Settings $Settings)
        if ($items.Count -gt 0) { $fallback.CommitChanges() }
        return $items.Count
    } finally { $fallback.Dispose() }
}

function Sync-Lockdown {
    $locations = @($state.site.locations)
    $siteLocation = $locations[0]
    $settings = @(Get-LockdownSetting)
    $manager = Open-ServerManager
    try {
        $config = $manager.GetApplicationHostConfiguration()
        $section = $config.GetSection($certMapFilter, $siteLocation)
        # The account first. Without it (Secrets Manager down, account error) the mappings stay as
        # they are and the sections are still converged: anonymous off fails closed (401.2).
        $mapped = $null
        try { $mapped = Get-MappedAccount -Section $section }
        catch { Add-Problem "mapped account $($state.mappedAccount.name): $($_.Exception.Message) (the mappings were left as they are; the sections were still converged)" }
        # Unreadable mappings are left as they are; the sections are still converged (401.2, closed).
        $currentMany = $null
        try { $currentMany = @(Read-ManyToOne -Section $section) }
        catch { Add-Problem "client certificate mappings at '$siteLocation' could not be read ($($_.Exception.Message)): not rewritten; the sections were still converged" }
        $items = [Collections.ArrayList]::new()
        $rewrite = $false
        if ($null -ne $mapped -and $null -ne $currentMany) {
            try {
                $wantedMany = @(Get-WantedManyToOne -UserName $mapped.userName)  # refuses duplicate names before anything changes
                $why = @()
                # Same names, descriptions, flags, user names and rules in the same order (passwords: Get-MappedAccount).
                # -cne: names, sub-fields and match criteria are case-sensitive (IIS_schema.xml).
                if ((ConvertTo-Json -InputObject $currentMany -Depth 6 -Compress) -cne (ConvertTo-Json -InputObject $wantedMany -Depth 6 -Compress)) {
                    $why += "many-to-one [$(@($currentMany | ForEach-Object { $_.name }) -join ', ')] differ from [$(@($wantedMany | ForEach-Object { $_.name }) -join ', ')]"
                }
                if ($mapped.rewrite -and $wantedMany.Count -gt 0) { $why += $mapped.why }
                if ($why.Count -gt 0 -or $mapped.rewrite) {
                    if (-not $mapped.password -and -not $reportOnlyMode) { Add-Problem "client certificate mappings at '$siteLocation' differ ($($why -join '; ')) but no password is known for $($mapped.userName): not rewritten" }
                    else {
                        $rewrite = $true
                        if ($why.Count -gt 0) {
                            [void]$items.Add("many-to-one mappings at '$siteLocation': $($why -join '; ')")
                            if (-not $reportOnlyMode) { Set-ManyToOne -Section $section -Wanted $wantedMany -Password $mapped.password }
                        }
                    }
                }
                if ($mapped.password -or $reportOnlyMode) {
                    $oneToOne = Sync-OneToOne -Section $section -UserName $mapped.userName -Password $mapped.password -Rewrite ($rewrite -and $mapped.rewrite) -Plan:$reportOnlyMode
                    if ($oneToOne) { [void]$items.Add("one-to-one mappings at '$siteLocation': $oneToOne") }
                }
            } catch {
                # Building the change set failed part way (MWA refused a value, an inherited entry that
                # cannot be removed): none of it is committed; the section settings alone are.
                $failure = $_.Exception.Message
                if ($reportOnlyMode) { throw }
                $kept = Write-LockdownFallback -Settings $settings
                throw "the mappings could not be built ($failure); the section settings alone were committed ($kept written): devices without a mapping get 401.2"
            }
        }
        foreach ($item in @(Set-LockdownSetting -Config $config -Settings $settings)) { [void]$items.Add($item) }
        $mappingItems = @($items | Where-Object { $_ -match '^(many|one)-to-one mappings' })
        try {
            Invoke-ConvergeAll -What @($items) -Fix { $manager.CommitChanges() }
        } catch {
            $failure = $_.Exception.Message
            if ($mappingItems.Count -eq 0) { throw }
            $kept = Write-LockdownFallback -Settings $settings
            throw "the mappings and section settings were not committed ($failure); the section settings alone were ($kept written): devices without a mapping get 401.2"
        }
        $shown = @()
        if ($null -ne $currentMany) { $shown = $currentMany }
        if ($rewrite -and -not $reportOnlyMode -and $mappingItems.Count -gt 0) { $shown = @(Read-ManyToOne -Section $section) }
        $report.checks.mappings = @($shown | ForEach-Object { [ordered]@{ location = $siteLocation; name = $_.name; enabled = $_.enabled; permissionMode = $_.permissionMode; userName = $_.userName; rules = $_.rules } })
    } finally { $manager.Dispose() }
    # What IIS applies, read afresh (after the commit, in converge mode).
    $applied = Open-ServerManager
    try {
        $effective = Read-Effective -Manager $applied -Settings $settings
        # The applications inherit the site's mappings; mappings of their own would shadow the site's.
        $siteJson = ConvertTo-Json -InputObject @(Read-ManyToOne -Section ($applied.GetApplicationHostConfiguration().GetSection($certMapFilter, $siteLocation))) -Depth 6 -Compress
        foreach ($child in @($locations | Select-Object -Skip 1)) {
            if ((ConvertTo-Json -InputObject @(Read-ManyToOne -Section ($applied.GetApplicationHostConfiguration().GetSection($certMapFilter, $child))) -Depth 6 -Compress) -cne $siteJson) {
                Add-Problem "location '$child' has many-to-one mappings of its own: remove them from its <location> so it inherits the site's"
            }
        }
    } finally { $applied.Dispose() }
    $report.checks.binding.sslFlags = $effective["$siteLocation|$accessFilter|sslFlags"]
    $report.checks.anonymousEnabled = $effective["$siteLocation|$anonymousFilter|enabled"]
    $report.checks.locations = @(foreach ($where in @(@($locations) + @($state.serverRuntime.locations) | Select-Object -Unique)) {
        [ordered]@{ location = $where; sslFlags = $effective["$where|$accessFilter|sslFlags"]; anonymousEnabled = $effective["$where|$anonymousFilter|enabled"]
            certificateMappingEnabled = $effective["$where|$certMapFilter|enabled"]; authenticatedUserOverride = $effective["$where|$runtimeFilter|authenticatedUserOverride"] }
    })
}

# --- request filtering

function Test-ExtensionAllowed {
    # Would request filtering serve this extension (no 404.7)? An entry decides; without one,
    # allowUnlisted does.
    param($Section, [string]$Extension)
    $entry = @($Section.GetCollection('fileExtensions') | Where-Object { [string]$_.GetAttributeValue('fileExtension') -eq $Extension }) | Select-Object -First 1
    if ($null -ne $entry) { return (ConvertTo-Bool $entry.GetAttributeValue('allowed')) }
    return (ConvertTo-Bool ($Section.GetChildElement('fileExtensions').GetAttributeValue('allowUnlisted')))
}

function Sync-RequestFiltering {
    # At the site in applicationHost.config, only where the Flexera file types would be refused: an
    # entry that denies one is removed and added again as allowed; with allowUnlisted off, a
    # missing one is added. Nothing is added otherwise (an entry nobody needs could collide with a
    # web.config that adds the same extension: 500.19). Then checked where IIS applies it: request
    # filtering may be overridden in a web.config (overrideModeDefault Allow), and one that denies
    # a Flexera file type makes agents get 404.7 there while applicationHost.config looks right.
    $siteLocation = @($state.site.locations)[0]
    $manager = Open-ServerManager
    try {
        $section = $manager.GetApplicationHostConfiguration().GetSection($filteringFilter, $siteLocation)
        $entries = $section.GetCollection('fileExtensions')
        $items = [Collections.ArrayList]::new()
        foreach ($extension in $state.requestFiltering.allowExtensions) {
            if (Test-ExtensionAllowed -Section $section -Extension $extension) { continue }
            [void]$items.Add("request filtering at '$siteLocation' does not allow $extension")
            $entry = @($entries | Where-Object { [string]$_.GetAttributeValue('fileExtension') -eq $extension }) | Select-Object -First 1
            if ($null -ne $entry) { $entries.Remove($entry) }
            $added = $entries.CreateElement('add')
            $added.SetAttributeValue('fileExtension', $extension)
            $added.SetAttributeValue('allowed', $true)
            $null = $entries.Add($added)
        }
        Invoke-ConvergeAll -What $items -Fix { $manager.CommitChanges() }
    } finally { $manager.Dispose() }
    $applied = Open-ServerManager
    try {
        foreach ($location in $state.site.locations) {
            $where = Get-ServedPath -Manager $applied -Location $location
            if ($null -eq $where) { continue }
            $effective = $applied.GetWebConfiguration($where.site, $where.path).GetSection($filteringFilter)
            foreach ($extension in $state.requestFiltering.allowExtensions) {
                if (Test-ExtensionAllowed -Section $effective -Extension $extension) { continue }
                if ($reportOnlyMode -and $items.Count -gt 0) { continue }  # drift of applicationHost.config itself, already reported
                Add-Problem "request filtering refuses $extension where IIS applies it ('$location'): a web.config overrides the site (agents get 404.7)"
            }
        }
    } finally { $applied.Dispose() }
}

# --- W3C logging with the client certificate's facts (sites/siteDefaults/logFile, and a site's own)

function Sync-LogFile {
    # One logFile element, in memory: W3C, the desired fields added to those there (an
    # administrator's extra fields stay), the certificate custom fields. -OwnOnly (a site): only
    # what the site sets itself, which would override siteDefaults. Returns what differs.
    param($LogFile, [string]$Where, [switch]$OwnOnly)
    $items = [Collections.ArrayList]::new()
    $format = $LogFile.GetAttribute('logFormat')
    if (-not $OwnOnly -or -not $format.IsInheritedFromDefaultValue) {
        $name = ConvertFrom-IisNumber -Attribute 'logFormat' -Value $format.Value
        if ($name -ne 'W3C') { [void]$items.Add("IIS logs of $Where are '$name', not W3C (custom fields need W3C)"); $LogFile.SetAttributeValue('logFormat', 'W3C') }
    }
    $flags = $LogFile.GetAttribute('logExtFileFlags')
    if (-not $OwnOnly -or -not $flags.IsInheritedFromDefaultValue) {
        $have = ConvertTo-IisNumber -Attribute 'logExtFileFlags' -Value $flags.Value
        $want = ConvertTo-IisNumber -Attribute 'logExtFileFlags' -Value (@($state.logging.fields) -join ',')
        if (($have -band $want) -ne $want) {
            $missing = ConvertFrom-IisNumber -Attribute 'logExtFileFlags' -Value ($want -band -bnot $have)
            [void]$items.Add("IIS log fields of $Where lack $missing")
            $LogFile.SetAttributeValue('logExtFileFlags', ((ConvertFrom-IisNumber -Attribute 'logExtFileFlags' -Value ($have -bor $want)) -replace ',', ', '))
        }
    }
    $fields = $LogFile.GetCollection('customFields')
    if ($OwnOnly -and @($fields).Count -eq 0) { return $items }
    foreach ($field in $state.logging.customFields) {
        Assert-Match -Value $field.logFieldName -Pattern '^[a-z][a-z0-9-]{0,31}$' -What 'log field name'
        Assert-Match -Value $field.sourceName -Pattern '^[A-Z][A-Z0-9_]{0,63}$' -What 'log field source'
        $entry = @($fields | Where-Object { [string]$_.GetAttributeValue('logFieldName') -eq $field.logFieldName }) | Select-Object -First 1
        if ($null -ne $entry -and [string]$entry.GetAttributeValue('sourceName') -eq $field.sourceName -and
            (ConvertTo-IisNumber -Attribute 'sourceType' -Value $entry.GetAttributeValue('sourceType')) -eq (ConvertTo-IisNumber -Attribute 'sourceType' -Value $field.sourceType)) { continue }
        [void]$items.Add("IIS log field $($field.logFieldName) of $Where is not $($field.sourceType) $($field.sourceName)")
        if ($null -ne $entry) { $fields.Remove($entry) }
        $new = $fields.CreateElement('add')
        $new.SetAttributeValue('logFieldName', $field.logFieldName)
        $new.SetAttributeValue('sourceName', $field.sourceName)
        $new.SetAttributeValue('sourceType', $field.sourceType)
        $null = $fields.Add($new)
    }
    return $items
}

function Sync-Logging {
    $manager = Open-ServerManager
    try {
        $sites = $manager.GetApplicationHostConfiguration().GetSection('system.applicationHost/sites')
        $defaults = $sites.GetChildElement('siteDefaults').GetChildElement('logFile')
        $items = @(Sync-LogFile -LogFile $defaults -Where 'siteDefaults')
        foreach ($siteElement in @($sites.GetCollection() | Where-Object { [string]$_.GetAttributeValue('name') -eq $state.site.name })) {
            $items += @(Sync-LogFile -LogFile $siteElement.GetChildElement('logFile') -Where "site '$($state.site.name)' (its own logFile overrides siteDefaults)" -OwnOnly)
        }
        $report.checks.logging = [ordered]@{
            logFormat = ConvertFrom-IisNumber -Attribute 'logFormat' -Value $defaults.GetAttributeValue('logFormat')
            fields = ConvertFrom-IisNumber -Attribute 'logExtFileFlags' -Value $defaults.GetAttributeValue('logExtFileFlags')
            customFields = @($defaults.GetCollection('customFields') | ForEach-Object { "$($_.GetAttributeValue('logFieldName'))=$($_.GetAttributeValue('sourceName'))" })
        }
        Invoke-ConvergeAll -What $items -Fix { $manager.CommitChanges() }
    } finally { $manager.Dispose() }
}

# --- MIME maps of the agent files (static content at the site)

function Sync-MimeMaps {
    # Agents download the Flexera files from ManageSoftDL as static files, and IIS serves no
    # extension without a MIME map (404.3). Flexera documents none of its own for them. A map is
    # added at the site in applicationHost.config only when the beacon's paths exist (a web.config
    # they bring may add its own maps: one of ours added before it would collide, 500.19) and only
    # for an extension IIS applies at none of them. An agent path that lacks a map another one has
    # is reported, not patched (ours would collide there). If a web.config adds one of ours again
    # without <remove> (500.19, duplicate entry), ours is taken out and the web.config's applies.
    $locations = @($state.site.locations)
    $siteLocation = $locations[0]
    $manager = Open-ServerManager
    try {
        $served = @(foreach ($location in $state.site.locations) { $where = Get-ServedPath -Manager $manager -Location $location; if ($null -ne $where) { $where } })
        if ($served.Count -lt $locations.Count) {
            [void]$report.warnings.Add("MIME maps wait for the beacon's paths ($($locations -join ', ')) to exist: a map added before their web.config could collide with one it brings")
            return
        }
        $ours = $manager.GetApplicationHostConfiguration().GetSection($staticFilter, $siteLocation).GetCollection()
        $applying = @{}  # extension -> the locations where IIS applies a map for it
        $duplicated = [Collections.ArrayList]::new()
        $unread = [Collections.ArrayList]::new()  # paths IIS cannot read this run: no map is judged missing there
        for ($index = 0; $index -lt $served.Count; $index++) {
            $where = $served[$index]
            try { $applied = @($manager.GetWebConfiguration($where.site, $where.path).GetSection($staticFilter).GetCollection() | ForEach-Object { [string]$_.GetAttributeValue('fileExtension') }) }
            catch {
                # IIS: "Cannot add duplicate collection entry of type 'mimeMap' with unique key attribute 'fileExtension' set to '.osd'"
                $message = $_.Exception.Message
                $named = @($state.staticContent.mimeMaps | Where-Object { $message -match "set to '$([regex]::Escape($_.fileExtension))'" })
                if ($named.Count -eq 0) { throw }
                foreach ($namedMap in $named) { if (-not $duplicated.Contains($namedMap.fileExtension)) { [void]$duplicated.Add($namedMap.fileExtension) } }
                [void]$unread.Add($locations[$index])
                continue
            }
            foreach ($map in $state.staticContent.mimeMaps) {
                if ($applied -contains $map.fileExtension) { $applying[$map.fileExtension] = @($applying[$map.fileExtension]) + @($locations[$index]) }
            }
        }
        $items = [Collections.ArrayList]::new()
        foreach ($duplicate in $duplicated) {
            $entry = @($ours | Where-Object { $_.IsLocallyStored -and [string]$_.GetAttributeValue('fileExtension') -eq $duplicate }) | Select-Object -First 1
            if ($null -eq $entry) { Add-Problem "a web.config under '$siteLocation' adds the MIME map $duplicate twice (500.19): remove one"; continue }
            [void]$items.Add("MIME map $duplicate at '$siteLocation' is also added by a web.config (500.19 there): ours is removed")
            $ours.Remove($entry)
        }
        foreach ($missingMap in $state.staticContent.mimeMaps) {
            if ($duplicated.Contains($missingMap.fileExtension)) { continue }
            $where = @($applying[$missingMap.fileExtension] | Where-Object { $_ })
            $lacking = @($locations | Select-Object -Skip 1 | Where-Object { $where -notcontains $_ -and $unread -notcontains $_ })
            if ($lacking.Count -eq 0) { continue }  # every agent path serves it
            if ($where.Count -gt 0) { Add-Problem "MIME map $($missingMap.fileExtension) applies at $($where -join ', ') but not at $($lacking -join ', ') (404.3 there): add it to that path's web.config"; continue }
            Assert-Match -Value $missingMap.fileExtension -Pattern '^\.[a-z0-9]{1,16}$' -What 'MIME map extension'
            Assert-Match -Value $missingMap.mimeType -Pattern '^[a-z]+/[a-z0-9.+-]+$' -What 'MIME type'
            [void]$items.Add("IIS serves no $($missingMap.fileExtension) files at '$siteLocation' (no MIME map: 404.3)")
            $element = $ours.CreateElement('mimeMap')
            $element.SetAttributeValue('fileExtension', $missingMap.fileExtension)
            $element.SetAttributeValue('mimeType', $missingMap.mimeType)
            $null = $ours.Add($element)
        }
        Invoke-ConvergeAll -What $items -Fix { $manager.CommitChanges() }
    } finally { $manager.Dispose() }
}

# --- certificates

function ConvertFrom-Pem {
    param([string]$Pem)
    $body = ($Pem -replace '-----(BEGIN|END) CERTIFICATE-----', '') -replace '\s', ''
    return [Security.Cryptography.X509Certificates.X509Certificate2]::new([Convert]::FromBase64String($body))
}

function Test-BoundCertificate {
    param([string]$Thumbprint)
    $report.checks.binding.thumbprint = $Thumbprint
    $bound = Get-Item -LiteralPath "Cert:\LocalMachine\My\$Thumbprint" -ErrorAction SilentlyContinue
    if ($null -eq $bound) { return }
    $report.checks.binding.subject = $bound.Subject
    $report.checks.binding.notAfter = $bound.NotAfter.ToUniversalTime().ToString('o')
    if ($bound.NotAfter -lt (Get-Date)) { Add-Problem "server certificate $Thumbprint expired on $($report.checks.binding.notAfter)" }
    elseif ($bound.NotAfter -lt (Get-Date).AddDays(30)) { [void]$report.warnings.Add("server certificate $Thumbprint expires on $($report.checks.binding.notAfter)") }
    if (-not $bound.HasPrivateKey) { Add-Problem "server certificate $Thumbprint in LocalMachine\My has no private key" }
}

function Sync-ServerCertificate {
    # The thumbprint HTTP.sys must present; imports the PFX (Secrets Manager, or -PfxPath with
    # -Local) into LocalMachine\My when it is missing.
    $server = $state.serverCertificate
    if (($localMode -and -not $PfxPath) -or (-not $localMode -and $null -eq $server)) {
        $current = Get-HttpSysBinding -IpPort $state.httpSys.ipPort
        if ($null -eq $current) { throw 'no server certificate: set serverCertificateSecretArn (and its password secret), give -PfxPath with -Local, or bind one in HTTP.sys' }
        [void]$report.warnings.Add('no server certificate given (serverCertificate, or -PfxPath with -Local): the certificate bound in HTTP.sys stays')
        $kept = $current.certhash.ToUpperInvariant()
        Test-BoundCertificate -Thumbprint $kept
        return $kept
    }
    $source = $PfxPath
    if ($localMode) {
        $pfxBytes = [IO.File]::ReadAllBytes($PfxPath)
        $passwordText = Read-PasswordFile -Path $PfxPasswordPath -Name 'PfxPasswordPath'
    } else {
        Assert-Match $server.store '^My$' 'serverCertificate.store'
        $source = "secret $($server.pfxSecretArn)"
        $pfxSecret = Get-SecretValue -SecretId $server.pfxSecretArn
        if ($null -ne $pfxSecret.SecretBinary) { $pfxBytes = $pfxSecret.SecretBinary.ToArray() }
        elseif ($pfxSecret.SecretString) { $pfxBytes = [Convert]::FromBase64String($pfxSecret.SecretString) }
        else { throw "$source is empty: store the PFX as a binary secret" }
        $passwordText = (Get-SecretValue -SecretId $server.passwordSecretArn).SecretString
    }
    $password = ConvertTo-SecureString -String $passwordText -AsPlainText -Force
    $pfxFile = [IO.Path]::GetTempFileName()
    try {
        [IO.File]::WriteAllBytes($pfxFile, $pfxBytes)
        $leaf = @((Get-PfxData -FilePath $pfxFile -Password $password).EndEntityCertificates)[0]
        if ($null -eq $leaf) { throw "the PFX in $source holds no end-entity certificate" }
        $thumbprint = $leaf.Thumbprint.ToUpperInvariant()
        if (-not (Test-Path -LiteralPath "Cert:\LocalMachine\My\$thumbprint")) {
            Invoke-Converge "server certificate $thumbprint ($($leaf.Subject)) not in LocalMachine\My" {
                $null = Import-PfxCertificate -FilePath $pfxFile -CertStoreLocation 'Cert:\LocalMachine\My' -Password $password
            }
        }
    } finally { Remove-Item -LiteralPath $pfxFile -Force -ErrorAction SilentlyContinue }
    $serverAuth = @($leaf.Extensions | Where-Object { $_.Oid.Value -eq '2.5.29.37' } | ForEach-Object { $_.EnhancedKeyUsages } | Where-Object { $_.Value -eq '1.3.6.1.5.5.7.3.1' })
    if ($serverAuth.Count -eq 0) { [void]$report.warnings.Add("server certificate $thumbprint has no Server Authentication EKU") }
    Test-BoundCertificate -Thumbprint $thumbprint
    return $thumbprint
}

function Add-StoreCertificate {
    param([string]$Pem, [string]$StoreName, [string]$Thumbprint)
    $certificate = ConvertFrom-Pem -Pem $Pem
    if ($certificate.Thumbprint -ne $Thumbprint) { throw "desired state: the PEM for $Thumbprint has thumbprint $($certificate.Thumbprint)" }
    $store = [Security.Cryptography.X509Certificates.X509Store]::new($StoreName, 'LocalMachine')
    $store.Open('ReadWrite')
    try { $store.Add($certificate) } finally { $store.Close() }
}

function Sync-TrustStores {
    $seen = [Collections.ArrayList]::new()
    foreach ($trust in $state.trustStores) {
        Assert-Match $trust.store '^(Root|CA|ClientAuthIssuer)$' 'trustStores[].store'
        Assert-Match $trust.thumbprint '^[0-9A-F]{40}$' 'trustStores[].thumbprint'
        $present = Test-Path -LiteralPath "Cert:\LocalMachine\$($trust.store)\$($trust.thumbprint)"
        if (-not $present) {
            Invoke-Converge "$($trust.subject) ($($trust.thumbprint)) missing from LocalMachine\$($trust.store)" {
                Add-StoreCertificate -Pem $trust.pem -StoreName $trust.store -Thumbprint $trust.thumbprint
            }
            $present = -not $reportOnlyMode
        }
        [void]$seen.Add([ordered]@{ store = $trust.store; thumbprint = $trust.thumbprint; subject = $trust.subject; present = $present })
    }
    $report.checks.trustStores.certificates = @($seen)
    # Exclusive trust: only the desired issuing CAs may sit in ClientAuthIssuer.
    $issuers = @($state.trustStores | Where-Object { $_.store -eq 'ClientAuthIssuer' } | ForEach-Object { $_.thumbprint })
    if ($issuers.Count -gt 0 -and (Test-Path -LiteralPath 'Cert:\LocalMachine\ClientAuthIssuer')) {
        foreach ($other in @(Get-ChildItem -LiteralPath 'Cert:\LocalMachine\ClientAuthIssuer' | Where-Object { $issuers -notcontains $_.Thumbprint })) {
            Invoke-Converge "unexpected $($other.Subject) ($($other.Thumbprint)) in LocalMachine\ClientAuthIssuer" {
                Remove-Item -LiteralPath "Cert:\LocalMachine\ClientAuthIssuer\$($other.Thumbprint)"
            }
        }
    }
}

function Sync-Schannel {
    # SChannel reads both values at start-up only: a change is followed by a restart (exit 3010).
    # SendTrustedIssuerList 1 sends the names of the ClientAuthIssuer CAs in the TLS handshake.
    $wanted = [ordered]@{ ClientAuthTrustMode = [int]$state.schannel.clientAuthTrustMode; SendTrustedIssuerList = [int][bool]$state.schannel.sendTrustedIssuerList }
    $now = @{}
    foreach ($name in @($wanted.Keys)) {
        $current = (Get-ItemProperty -Path $schannelKey -Name $name -ErrorAction SilentlyContinue).$name
        $now[$name] = $current
        if ("$current" -ne "$($wanted[$name])") {
            Invoke-Converge "SCHANNEL $name is '$current', desired $($wanted[$name])" {
                # Recorded first: a value written without its restart on record would never take effect.
                Register-Reboot -Reason "SCHANNEL $name set to $($wanted[$name]) (was '$current')"
                $null = New-ItemProperty -Path $schannelKey -Name $name -PropertyType DWord -Value $wanted[$name] -Force
            }
            if (-not $reportOnlyMode) { $now[$name] = $wanted[$name] }
        }
    }
    $report.checks.trustStores.clientAuthTrustMode = $now['ClientAuthTrustMode']
    $report.checks.trustStores.sendTrustedIssuerList = $now['SendTrustedIssuerList']
}

function Test-SelfSigned {
    # Signed with its own key, not merely named after itself: the subject equals the issuer AND
    # CryptoAPI ends the chain at the certificate itself (a one-element chain, its signature
    # checked, no partial chain). A certificate whose issuer has the same name but another key
    # (a re-keyed CA) gets a longer or partial chain and is not self-signed.
    param($Certificate)
    if ([Convert]::ToBase64String($Certificate.SubjectName.RawData) -ne [Convert]::ToBase64String($Certificate.IssuerName.RawData)) { return $false }
    $chain = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Chain -ArgumentList $true
    try {
        $chain.ChainPolicy.RevocationMode = 'NoCheck'
        $chain.ChainPolicy.VerificationFlags = 'AllowUnknownCertificateAuthority, IgnoreNotTimeValid'
        $chain.ChainPolicy.UrlRetrievalTimeout = [TimeSpan]::FromSeconds(5)
        $null = $chain.Build($Certificate)
        if ($chain.ChainElements.Count -ne 1) { return $false }
        return (@($chain.ChainStatus | Where-Object { @('PartialChain', 'NotSignatureValid') -contains "$($_.Status)" }).Count -eq 0)
    } finally { $chain.Reset() }
}

function Test-RootStore {
    # A certificate in Root that is not self-signed makes IIS answer 403.16 under machine trust
    # (ClientAuthTrustMode 0). With exclusive trust (1 or 2, KB2802568's remedy) Root does not
    # decide client authentication: a warning then.
    $mode = (Get-ItemProperty -Path $schannelKey -Name 'ClientAuthTrustMode' -ErrorAction SilentlyContinue).ClientAuthTrustMode
    $notRoots = @(Get-ChildItem -LiteralPath 'Cert:\LocalMachine\Root' | Where-Object { -not (Test-SelfSigned -Certificate $_) })
    $report.checks.trustStores.nonSelfSignedInRoot = @($notRoots | ForEach-Object { [ordered]@{ thumbprint = $_.Thumbprint; subject = $_.Subject; issuer = $_.Issuer } })
    if ($notRoots.Count -eq 0) { return }
    $listed = @($notRoots | ForEach-Object { "$($_.Subject) [$($_.Thumbprint)]" }) -join '; '
    if (@('1', '2') -contains "$mode") { [void]$report.warnings.Add("LocalMachine\Root holds certificates that are not self-signed (ignored for client authentication with ClientAuthTrustMode $mode); move them to LocalMachine\CA: $listed") }
    else { Add-Problem "LocalMachine\Root holds certificates that are not self-signed (403.16 with ClientAuthTrustMode '$mode'); move them to LocalMachine\CA: $listed" }
}

# --- IIS binding and HTTP.sys

function Sync-SiteBinding {
    param([string]$Thumbprint)
    $site = $state.site.name
    $port = [int]$state.site.httpsPort
    if ($null -eq (Get-Website | Where-Object { $_.Name -eq $site })) { throw "IIS site '$site' does not exist" }
    $information = "*:${port}:"
    $report.checks.binding.site = $site
    $report.checks.binding.bindingInformation = $information
    $binding = Get-WebBinding -Name $site -Protocol 'https' -Port $port | Where-Object { $_.bindingInformation -eq $information }
    if ($null -eq $binding) {
        Invoke-Converge "site '$site' has no https binding $information" { New-WebBinding -Name $site -Protocol 'https' -Port $port -IPAddress '*' -SslFlags 0 }
        if ($reportOnlyMode) { return }
        $binding = Get-WebBinding -Name $site -Protocol 'https' -Port $port | Where-Object { $_.bindingInformation -eq $information }
    } elseif ("$($binding.sslFlags)" -notin @('0', 'None', '')) {
        Add-Problem "https binding $information of '$site' has sslFlags '$($binding.sslFlags)' (SNI/CCS): the 0.0.0.0 HTTP.sys binding does not apply"
        return
    }
    # What IIS Manager shows for the binding. AddSslCertificate sets it and rewrites the HTTP.sys
    # record with default flags; the httpSys step, which runs next, puts the flags back. It is
    # tried once per certificate, so a binding that does not keep the attribute never makes every
    # run drop the flags for a moment.
    $shownHash = "$($binding.certificateHash)".ToUpperInvariant()
    $shownStore = "$($binding.certificateStoreName)"
    $report.checks.binding.iisCertificateHash = $shownHash
    $report.checks.binding.iisCertificateStoreName = $shownStore
    if ($shownHash -eq $Thumbprint -and $shownStore -eq 'My') { return }
    $attempt = Join-Path $dataDir "iis-binding-$Thumbprint.attempted"
    if (Test-Path -LiteralPath $attempt) {
        [void]$report.warnings.Add("https binding $information of '$site' shows certificate '$shownHash' in IIS Manager although AddSslCertificate was run for $Thumbprint on $((Get-Content -LiteralPath $attempt -Raw).Trim()): HTTP.sys serves $Thumbprint")
        return
    }
    Invoke-Converge "https binding $information of '$site' shows certificate '$shownHash' in store '$shownStore' in IIS Manager, desired $Thumbprint in My" -Optional {
        $binding.AddSslCertificate($Thumbprint, 'My')
        # After the call: a call that failed is tried again next run; one that returned is not repeated.
        Set-Content -LiteralPath $attempt -Value ([DateTime]::UtcNow.ToString('o')) -Encoding ASCII
        $report.checks.binding.iisCertificateHash = $Thumbprint
        $report.checks.binding.iisCertificateStoreName = 'My'
    }
}

function Get-HttpSysBinding {
    # netsh http show sslcert, read back under the names of netsh http add sslcert.
    param([string]$IpPort)
    $lines = & netsh.exe @('http', 'show', 'sslcert', "ipport=$IpPort")
    if ($LASTEXITCODE -ne 0) { return $null }
    $raw = @{}
    foreach ($line in $lines) {
        if ("$line" -match '^\s*(.+?)\s*:\s(.*)$') { $raw[($Matches[1] -replace '\s', '').ToLowerInvariant()] = $Matches[2].Trim() }
    }
    if (-not $raw['certificatehash']) { return $null }
    $ctl = $raw['ctlstorename']
    if ($ctl -eq '(null)') { $ctl = $null }
    $readBack = [ordered]@{
        ipport = $IpPort
        certhash = $raw['certificatehash']
        appid = $raw['applicationid']
        certstorename = $raw['certificatestorename']
        verifyclientcertrevocation = (ConvertTo-NetshSwitch ($raw['verifyclientcertificaterevocation'] -eq 'Enabled'))
        verifyrevocationwithcachedclientcertonly = (ConvertTo-NetshSwitch ($raw['verifyrevocationusingcachedclientcertificateonly'] -eq 'Enabled'))
        usagecheck = (ConvertTo-NetshSwitch ($raw['usagecheck'] -eq 'Enabled'))
        revocationfreshnesstime = [int]$raw['revocationfreshnesstime']
        urlretrievaltimeout = [int]$raw['urlretrievaltimeout']
        sslctlstorename = $ctl
        clientcertnegotiation = (ConvertTo-NetshSwitch ($raw['negotiateclientcertificate'] -eq 'Enabled'))
    }
    return $readBack
}

function Invoke-Netsh {
    param([string[]]$Arguments)
    $output = & netsh.exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "netsh $($Arguments -join ' ') failed ($LASTEXITCODE): $(@($output) -join ' ')" }
}

function Sync-HttpSys {
    param([string]$Thumbprint)
    $http = $state.httpSys
    Assert-Match $http.ipPort '^[0-9.]+:[0-9]{1,5}$' 'httpSys.ipPort'
    Assert-Match $http.appId '^\{[0-9a-fA-F-]{36}\}$' 'httpSys.appId'
    Assert-Match $http.certStoreName '^[A-Za-z]+$' 'httpSys.certStoreName'
    if ($http.sslCtlStoreName) { Assert-Match $http.sslCtlStoreName '^[A-Za-z]+$' 'httpSys.sslCtlStoreName' }
    Assert-Match $Thumbprint '^[0-9A-F]{40}$' 'server certificate thumbprint'
    # Every flag, every run: IIS rebinding and certificate renewal drop the netsh-only ones.
    $wanted = [ordered]@{
        ipport = $http.ipPort
        certhash = $Thumbprint
        appid = $http.appId
        certstorename = $http.certStoreName
        verifyclientcertrevocation = (ConvertTo-NetshSwitch $http.verifyClientCertRevocation)
        verifyrevocationwithcachedclientcertonly = (ConvertTo-NetshSwitch $http.verifyRevocationWithCachedClientCertOnly)
        usagecheck = (ConvertTo-NetshSwitch $http.usageCheck)
        revocationfreshnesstime = [int]$http.revocationFreshnessTime
        urlretrievaltimeout = [int]$http.urlRetrievalTimeout
        sslctlstorename = $http.sslCtlStoreName
        clientcertnegotiation = (ConvertTo-NetshSwitch $http.clientCertNegotiation)
    }
    $current = Get-HttpSysBinding -IpPort $http.ipPort
    $report.checks.httpSys = $current
    $differences = @(foreach ($name in $wanted.Keys) {
        if ($null -eq $current) { "$name=(none)->$($wanted[$name])" }
        elseif ("$($current[$name])" -ne "$($wanted[$name])") { "$name=$($current[$name])->$($wanted[$name])" }
    })
    if ($differences.Count -eq 0) { return }
    Invoke-Converge "HTTP.sys binding $($http.ipPort) differs: $($differences -join '; ')" {
        # update replaces the record in place, so 443 keeps its certificate and flags throughout
        # (delete + add would leave a moment without TLS); add only when there is no record.
        $verb = 'update'
        if ($null -eq $current) { $verb = 'add' }
        Invoke-Netsh -Arguments (@('http', $verb, 'sslcert') + @(foreach ($name in $wanted.Keys) { if ($null -ne $wanted[$name]) { "$name=$($wanted[$name])" } }))
    }
    if (-not $reportOnlyMode) { $report.checks.httpSys = Get-HttpSysBinding -IpPort $http.ipPort }
}

# --- CRL reachability (403.13 when the beacon cannot fetch a CRL)

function Test-CrlReachability {
    $urls = [Collections.ArrayList]::new()
    foreach ($crlUrl in $state.crlUrls) { if ($crlUrl -and -not $urls.Contains([string]$crlUrl)) { [void]$urls.Add([string]$crlUrl) } }
    foreach ($trust in $state.trustStores) {
        foreach ($cdp in @((ConvertFrom-Pem -Pem $trust.pem).Extensions | Where-Object { $_.Oid.Value -eq '2.5.29.31' })) {
            foreach ($match in [regex]::Matches($cdp.Format($false), 'URL=(https?://[^\s,]+)')) {
                if (-not $urls.Contains($match.Groups[1].Value)) { [void]$urls.Add($match.Groups[1].Value) }
            }
        }
    }
    $report.checks.crl = @(foreach ($url in $urls) {
        $entry = [ordered]@{ url = $url; reachable = $false; status = $null; error = $null }
        try {
            $entry.status = [int](Invoke-WebRequest -Uri $url -Method Head -UseBasicParsing -TimeoutSec 15).StatusCode
            $entry.reachable = ($entry.status -ge 200 -and $entry.status -lt 300)
        } catch {
            $entry.error = $_.Exception.Message
            if ($null -ne $_.Exception.Response) { $entry.status = [int]$_.Exception.Response.StatusCode }
        }
        if (-not $entry.reachable) { [void]$report.warnings.Add("CRL $url is not reachable (devices would get 403.13): $($entry.error)") }
        $entry
    })
}

# --- beacon installer (optional, the last step)

function Format-ProcessArgument {
    # Start-Process joins -ArgumentList with spaces and quotes nothing (Windows PowerShell 5.1):
    # quote a value with spaces here, NAME="value" for a Windows Installer property.
    param([string]$Value)
    if ($Value -notmatch '[\s"]') { return $Value }
    if ($Value -match '"') { throw "installer argument <$Value> has a double quote: give values without quotes, they are added where needed" }
    if ($Value -match '\\$') { throw "installer argument <$Value> ends with a backslash, which would escape the closing quote: remove it" }
    if ($Value -match '^([A-Za-z_][A-Za-z0-9_.]*)=(.*)$') { return "$($Matches[1])=`"$($Matches[2])`"" }
    return "`"$Value`""
}

function Format-SetupArgument {
    # An .exe argument. Flexera's BeaconInstaller is an InstallShield setup: /v passes the rest to
    # msiexec and must be written /v"<msiexec arguments>" (the operator gives /v<arguments>, no quotes).
    param([string]$Value)
    if ($Value -cmatch '^/v(.+)$') {
        $inner = $Matches[1]
        if ($inner -match '"') { throw "installer argument <$Value> has a double quote: give /v's msiexec arguments without quotes" }
        return "/v`"$inner`""
    }
    return (Format-ProcessArgument -Value $Value)
}

function Sync-BeaconInstaller {
    $installer = $state.beaconInstaller
    if ($null -eq $installer) { return }
    if ($localMode) { [void]$report.warnings.Add("-Local: the beacon installer $($installer.s3Uri) is not fetched from S3; install the beacon yourself"); return }
    Assert-Match $installer.sha256 '^[0-9a-fA-F]{64}$' 'beaconInstaller.sha256'
    if (-not ($installer.s3Uri -match '^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+\.(msi|exe))$')) { throw "desired state: beaconInstaller.s3Uri '$($installer.s3Uri)' is not s3://bucket/key.msi|exe" }
    $bucket = $Matches[1]
    $key = $Matches[2]
    $kind = $Matches[3].ToLowerInvariant()
    $sha = $installer.sha256.ToUpperInvariant()
    $marker = Join-Path $dataDir "installer-$sha.done"
    if (Test-Path -LiteralPath $marker) { return }
    $given = @($installer.arguments | Where-Object { $null -ne $_ } | ForEach-Object { [string]$_ })
    # No silent switch is assumed for an .exe: Flexera documents unattended beacon installs with an
    # answer file, not one switch, so the operator's arguments must say how (docs/iis-mtls.md).
    if ($kind -eq 'exe' -and $given.Count -eq 0) { throw 'beaconInstaller: an .exe installer needs its unattended-install arguments in beaconInstallerArguments; none are assumed' }
    Invoke-Converge "beacon installer $($installer.s3Uri) (SHA-256 $sha) not installed" {
        $work = Join-Path $dataDir 'installer'
        $null = New-Item -ItemType Directory -Path $work -Force
        $file = Join-Path $work "beacon-$sha.$kind"
        if (Test-Path -LiteralPath $file) { [IO.File]::Delete($file) }
        $null = Read-S3Object -BucketName $bucket -Key $key -File $file -Region $state.region
        # Held open, readable by others but never writable or deletable, from the hash check until
        # the installer has ended: the bytes checked are the bytes msiexec (SYSTEM) installs.
        $held = [IO.File]::Open($file, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::Read)
        try {
            $actual = (Get-Sha256Hex -Source $held).ToUpperInvariant()
            if ($actual -ne $sha) {
                $held.Dispose()
                [IO.File]::Delete($file)
                throw "beacon installer SHA-256 is $actual, desired $($sha): deleted, not run"
            }
            if ($kind -eq 'msi') {
                # Always silent and never restarting by itself; the operator's UI or restart switches go.
                $extra = @($given | Where-Object { $_ -notmatch '^/(q[nbrf]?[+-]?!?|quiet|passive|norestart|forcerestart|promptrestart)$' } | ForEach-Object { Format-ProcessArgument -Value $_ })
                $arguments = @('/i', (Format-ProcessArgument -Value $file), '/qn', '/norestart', '/l*v', (Format-ProcessArgument -Value (Join-Path $work "beacon-$sha.log"))) + $extra
                $program = 'msiexec.exe'
            } else {
                $arguments = @($given | ForEach-Object { Format-SetupArgument -Value $_ })
                $program = $file
            }
            # Wait on the process itself (Start-Process -Wait also waits for every child it leaves).
            $process = Start-Process -FilePath $program -ArgumentList $arguments -PassThru
            $null = $process.Handle  # Windows PowerShell 5.1: without the handle ExitCode may read as empty
            if (-not $process.WaitForExit(1200000)) { throw "the beacon installer (process $($process.Id)) is still running after 20 minutes; it was left running" }
            $code = $process.ExitCode
        } finally { $held.Dispose() }
        if ($code -eq 1641) {
            # Windows Installer has started a restart itself: record it and stop this run here.
            Register-Reboot -Reason "beacon installer $sha exited 1641 (it started a restart)" -AlreadyRequested
            $run.restarting = $true
        } elseif ($code -eq 3010) { Register-Reboot -Reason "beacon installer $sha exited 3010" }
        elseif ($code -ne 0) { throw "beacon installer exited with $code" }
        Set-Content -LiteralPath $marker -Value ([DateTime]::UtcNow.ToString('o')) -Encoding ASCII
    }
}

# --- beacon registration (Flexera One): the beacon's own configuration file, staged

function Get-Sha256Hex {
    # SHA-256 as lower-case hex, of a byte array or of a stream read to its end (ComputeHash takes both).
    param($Source)
    $hasher = [Security.Cryptography.SHA256]::Create()
    try { return (-join @($hasher.ComputeHash($Source) | ForEach-Object { $_.ToString('x2') })) } finally { $hasher.Dispose() }
}

function Sync-BeaconRegistration {
    # Flexera One registers a beacon with a configuration file IT Asset Management makes for that
    # beacon (not to be shared between beacons), imported in FlexNet Beacon; Flexera documents no
    # unattended import. Each beacon reads its own file from Secrets Manager (the secret name ends
    # in its instance id) and keeps it in the private state folder for that one manual step. The
    # file's content never reaches the report or the log.
    $registration = $state.beaconRegistration
    if ($null -eq $registration) { return }
    if ($localMode) { [void]$report.warnings.Add('-Local: no beacon configuration file is staged (it is in Secrets Manager): import the one Flexera made for this beacon in FlexNet Beacon'); return }
    Assert-Match $registration.secretNamePrefix '^flexnet-beacon/[A-Za-z0-9_-]{1,38}/beacon-registration/$' 'beaconRegistration.secretNamePrefix'
    $instanceId = [string](Get-EC2InstanceMetadata -Category 'InstanceId')
    Assert-Match $instanceId '^i-[0-9a-f]{8,17}$' 'instance id'
    $secretName = "$($registration.secretNamePrefix)$instanceId"
    $report.checks.registration.source = $secretName
    try { $secret = Get-SecretValue -SecretId $secretName }
    catch {
        if ("$($_.Exception.Message)" -notmatch "ResourceNotFound|can't find the specified secret") { throw }
        [void]$report.warnings.Add("no beacon configuration file for this beacon yet: store the one Flexera made for it as secret $secretName (docs/operations.md)")
        return
    }
    if ($null -ne $secret.SecretBinary) { $bytes = $secret.SecretBinary.ToArray() }
    else { $bytes = [Text.Encoding]::UTF8.GetBytes([string]$secret.SecretString) }
    $folder = Join-Path $dataDir 'registration'
    $file = Join-Path $folder 'beacon-configuration'
    if ((Test-Path -LiteralPath $file) -and (Get-Sha256Hex -Source ([IO.File]::ReadAllBytes($file))) -eq (Get-Sha256Hex -Source $bytes)) {
        $report.checks.registration.staged = $file
        return
    }
    Invoke-Converge "the beacon configuration file of $instanceId is not staged at $file" {
        $null = New-Item -ItemType Directory -Path $folder -Force
        if (Test-Path -LiteralPath $file) { [IO.File]::Delete($file) }
        $stream = New-Object -TypeName System.IO.FileStream -ArgumentList $file, ([IO.FileMode]::CreateNew), ([Security.AccessControl.FileSystemRights]::FullControl), ([IO.FileShare]::None), 4096, ([IO.FileOptions]::WriteThrough), (New-PrivateSecurity -File)
        try { $stream.Write($bytes, 0, $bytes.Length) } finally { $stream.Dispose() }
        $report.checks.registration.staged = $file
        [void]$report.warnings.Add("a new beacon configuration file is staged at ${file}: import it in FlexNet Beacon (Flexera documents no unattended import; docs/operations.md)")
    }
}

# --- report

function Send-Report {
    param([string]$Json, [string]$Group)
    if ($localMode) { return }
    $stream = $env:COMPUTERNAME
    try { $null = New-CWLLogStream -LogGroupName $Group -LogStreamName $stream -Region $state.region }
    catch { if ($_.Exception.Message -notmatch 'already exists') { throw } }
    $logEvent = New-Object -TypeName Amazon.CloudWatchLogs.Model.InputLogEvent
    $logEvent.Message = $Json
    $logEvent.Timestamp = [DateTime]::UtcNow
    $null = Write-CWLLogEvent -LogGroupName $Group -LogStreamName $stream -LogEvent $logEvent -Region $state.region
}

try {
    $state = Read-DesiredState
    if ($state.schemaVersion -ne 1) { throw "desired state schemaVersion '$($state.schemaVersion)' is not supported (this script reads 1)" }
    $report.stack = $state.stack
    $report.enforcement = $state.enforcement
    $reportOnlyMode = $reportOnlyMode -or [bool]$state.reportOnly
    $report.reportOnly = $reportOnlyMode
    if (-not $LogGroupName) { $LogGroupName = $state.logGroupName }
    if (-not $localMode -and ($PfxPath -or $PfxPasswordPath -or $AccountPasswordPath)) { throw '-PfxPath, -PfxPasswordPath and -AccountPasswordPath are read only with -Local' }
    if ($localMode -and $LogGroupName) { [void]$report.warnings.Add("-Local: the report is not sent to CloudWatch Logs group $LogGroupName") }
} catch {
    $report.error = "$($_.Exception.Message) (line $($_.InvocationInfo.ScriptLineNumber))"
    Write-Log "failed: $($report.error)"
}

# The steps, in this order (tests/iis/test_converge_order.py holds it). The state folder is made
# private before any file of it is read or written. Lock-down (mappings, mapping authentication
# on, anonymous off, SSL flags, section locks) is the first step that writes IIS configuration, so
# nothing that can fail later (Secrets Manager, the PFX, trust stores, netsh, the installer) keeps
# it from being checked; and 443 opens only on it: the https binding and the HTTP.sys record come
# last and need a lock-down that succeeded in this run, and its re-check after the installer when
# the installer ran (`?`: when it ran). A beacon whose lock-down never succeeded serves nothing on
# 443. Each step has its own try/catch; a step that needs another runs only when that one ended
# ok, changed or drift, otherwise it is recorded as skipped with the reason.
$thumbprint = $null
if (-not $report.error) {
    if (Start-Step -Name 'stateFolder') {
        try { Initialize-StateFolder; Complete-Step -Name 'stateFolder' } catch { Complete-Step -Name 'stateFolder' -Failure $_ }
    }
    if (Start-Step -Name 'reboot' -Requires 'stateFolder') {
        try { Read-RebootState; Complete-Step -Name 'reboot' } catch { Complete-Step -Name 'reboot' -Failure $_ }
    }
    if (Start-Step -Name 'features' -Requires 'stateFolder') {
        try { Sync-Features; Complete-Step -Name 'features' } catch { Complete-Step -Name 'features' -Failure $_ }
    }
    if (Start-Step -Name 'webAdministration') {
        try { Import-IisModule; Complete-Step -Name 'webAdministration' } catch { Complete-Step -Name 'webAdministration' -Failure $_ }
    }
    if (Start-Step -Name 'lockdown' -Requires 'webAdministration') {
        try { Sync-Lockdown; Complete-Step -Name 'lockdown' } catch { Complete-Step -Name 'lockdown' -Failure $_ }
    }
    if (Start-Step -Name 'requestFiltering' -Requires 'webAdministration') {
        try { Sync-RequestFiltering; Complete-Step -Name 'requestFiltering' } catch { Complete-Step -Name 'requestFiltering' -Failure $_ }
    }
    if (Start-Step -Name 'mimeMaps' -Requires 'webAdministration') {
        try { Sync-MimeMaps; Complete-Step -Name 'mimeMaps' } catch { Complete-Step -Name 'mimeMaps' -Failure $_ }
    }
    if (Start-Step -Name 'logging' -Requires 'webAdministration') {
        try { Sync-Logging; Complete-Step -Name 'logging' } catch { Complete-Step -Name 'logging' -Failure $_ }
    }
    if (Start-Step -Name 'serverCertificate') {
        try { $thumbprint = Sync-ServerCertificate; Complete-Step -Name 'serverCertificate' } catch { Complete-Step -Name 'serverCertificate' -Failure $_ }
    }
    if (Start-Step -Name 'trustStores') {
        try { Sync-TrustStores; Complete-Step -Name 'trustStores' } catch { Complete-Step -Name 'trustStores' -Failure $_ }
    }
    if (Start-Step -Name 'schannel' -Requires 'stateFolder') {
        try { Sync-Schannel; Complete-Step -Name 'schannel' } catch { Complete-Step -Name 'schannel' -Failure $_ }
    }
    if (Start-Step -Name 'rootStore') {
        try { Test-RootStore; Complete-Step -Name 'rootStore' } catch { Complete-Step -Name 'rootStore' -Failure $_ }
    }
    if (Start-Step -Name 'beaconInstaller' -Requires 'lockdown', 'stateFolder') {
        try { Sync-BeaconInstaller; Complete-Step -Name 'beaconInstaller' } catch { Complete-Step -Name 'beaconInstaller' -Failure $_ }
    }
    # Whatever the installer wrote into the locked sections is undone in the same run, before 443 is
    # touched; also after an installer that failed part way.
    if (@('changed', 'failed') -contains $run.results['beaconInstaller'] -and -not $run.restarting -and (Start-Step -Name 'lockdownAfterInstaller' -Requires 'lockdown')) {
        try { Sync-Lockdown; Complete-Step -Name 'lockdownAfterInstaller' } catch { Complete-Step -Name 'lockdownAfterInstaller' -Failure $_ }
    }
    if (Start-Step -Name 'siteBinding' -Requires 'lockdown', 'lockdownAfterInstaller?', 'serverCertificate', 'stateFolder') {
        try { Sync-SiteBinding -Thumbprint $thumbprint; Complete-Step -Name 'siteBinding' } catch { Complete-Step -Name 'siteBinding' -Failure $_ }
    }
    if (Start-Step -Name 'httpSys' -Requires 'lockdown', 'lockdownAfterInstaller?', 'serverCertificate') {
        try { Sync-HttpSys -Thumbprint $thumbprint; Complete-Step -Name 'httpSys' } catch { Complete-Step -Name 'httpSys' -Failure $_ }
    }
    if (Start-Step -Name 'crl') {
        try { Test-CrlReachability; Complete-Step -Name 'crl' } catch { Complete-Step -Name 'crl' -Failure $_ }
    }
    if (Start-Step -Name 'beaconRegistration' -Requires 'stateFolder') {
        try { Sync-BeaconRegistration; Complete-Step -Name 'beaconRegistration' } catch { Complete-Step -Name 'beaconRegistration' -Failure $_ }
    }
    Write-Log "start was $($report.startedAt) (-ReportOnly: $reportOnlyMode)"
}

# Report-only reports and never restarts. A converge run with a restart pending exits 3010 once
# per change (SSM Agent restarts the instance and runs the step again, which then finds it done),
# 4 while it is still pending after that, and fails past the restart budget.
$restart = $null
if ($report.checks.reboot.pending -and -not $reportOnlyMode -and -not $report.error) {
    try { $restart = Request-Reboot }
    catch { [void]$report.warnings.Add("the restart request was not recorded: $($_.Exception.Message)") }
}
$failed = @($report.steps | Where-Object { $_.status -eq 'failed' })
if (-not $report.error -and $failed.Count -gt 0) { $report.error = @($failed | ForEach-Object { "$($_.name): $($_.error)" }) -join ' | ' }
if ($restart -eq 'refused') { $report.error = (@($report.error, "restart: $($report.checks.reboot.refused)") | Where-Object { $_ }) -join ' | ' }
$exitCode = 0
if ($report.error) { $report.status = 'failed'; $exitCode = 1 }
elseif ($report.checks.reboot.pending) { $report.status = 'reboot-pending' }
elseif ($reportOnlyMode -and $report.drift.Count -gt 0) { $report.status = 'drift' }
elseif (-not $reportOnlyMode -and $report.changes.Count -gt 0) { $report.status = 'converged' }
else { $report.status = 'compliant' }
if ($restart -eq 'requested') { $exitCode = 3010 }
elseif ($report.checks.reboot.pending -and -not $reportOnlyMode -and $exitCode -eq 0) { $exitCode = 4 }
$report.finishedAt = [DateTime]::UtcNow.ToString('o')
$json = ConvertTo-Json -InputObject $report -Depth 8 -Compress
if ($LogGroupName -and -not $localMode) {
    try { Send-Report -Json $json -Group $LogGroupName }
    catch { [Console]::Error.WriteLine("warning: the report did not reach CloudWatch Logs group '$LogGroupName': $($_.Exception.Message)") }
}
Write-Log "end: $($report.status), exit $exitCode, $($report.changes.Count) changes, $($report.drift.Count) drift"
if ($ReportPath) {
    try { [IO.File]::WriteAllText($ReportPath, $json) }
    catch { [Console]::Error.WriteLine("the report was not written to ${ReportPath}: $($_.Exception.Message)"); $exitCode = 1 }
}
Write-Output $json
if ($exitCode -eq 1) { [Console]::Error.WriteLine("Set-BeaconMtls failed: $($report.error)") }
exit $exitCode
