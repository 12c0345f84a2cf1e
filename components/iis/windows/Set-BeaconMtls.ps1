<#
Set-BeaconMtls.ps1: converge a FlexNet beacon (Windows Server 2022, IIS 10, Windows PowerShell 5.1)
to the desired state of components/iis/state.py and print ONE JSON report on stdout.
The state is data only (-StatePath FILE or -EncodedState TEXT); no value of it runs as code.
Steps run in a fixed order (at the end of this file), lock-down first, each in its own try/catch,
each recorded in report.steps; a step that needs a failed one is skipped and says why.
Exit codes: 0 compliant, converged, or (report-only) drift or reboot-pending; 1 failed;
3010 a change needs a restart: SSM Agent restarts the instance and runs this again (once per
change); 4 a restart was asked for before and has not happened yet.
#>
[CmdletBinding()]
param([string]$StatePath, [string]$EncodedState, [switch]$ReportOnly, [string]$LogGroupName)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 serialises arrays as {"value":[...],"Count":n} while this type data exists.
try { Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue } catch { Write-Verbose 'no System.Array type data' }
$apphost = 'MACHINE/WEBROOT/APPHOST'
$certMapFilter = 'system.webServer/security/authentication/iisClientCertificateMappingAuthentication'
$anonymousFilter = 'system.webServer/security/authentication/anonymousAuthentication'
$schannelKey = 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL'
$dataDir = Join-Path $env:ProgramData 'flexnet-beacon'
$logFile = Join-Path $dataDir 'converge.log'
$pendingMarker = Join-Path $dataDir 'mappings-rewrite.pending'
$rebootMarker = Join-Path $dataDir 'reboot-pending.json'
$accountRecord = Join-Path $dataDir 'mapped-account.dpapi'
$userDataMarker = Join-Path $dataDir 'user-data.running'
$recordEntropy = [Text.Encoding]::UTF8.GetBytes('flexnet-beacon mapped account')
$overrideNames = @('UseAuthenticatedUser', 'UseWorkerProcessUser')
$state = $null
$reportOnlyMode = [bool]$ReportOnly
$problems = [Collections.ArrayList]::new()
# The step in progress and where the report's lists stood when it began; results by step name.
$run = @{ step = $null; drift = 0; changes = 0; problems = 0; results = @{}; restarting = $false }
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
        reboot = [ordered]@{ pending = $false; recordedAt = $null; requestedAt = $null; reasons = @(); lastBootAt = $null }
    }
    error = $null
}

function Write-Log {
    param([string]$Message)
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
    param([string]$Name, [string[]]$Requires = @())
    $missing = @(foreach ($need in $Requires) {
        $seen = $run.results[$need]
        if (@('ok', 'changed', 'drift') -notcontains $seen) { if (-not $seen) { $seen = 'not run' }; "$need ($seen)" }
    })
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

function Format-FlagSet {
    param($Value)
    return ((@("$Value" -split ',') | ForEach-Object { $_.Trim() } | Where-Object { $_ } | Sort-Object) -join ',')
}

function Read-DesiredState {
    if ($EncodedState) { $text = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($EncodedState)) }
    elseif ($StatePath) { $text = [IO.File]::ReadAllText($StatePath, [Text.Encoding]::UTF8) }
    else { throw 'no desired state: pass -StatePath FILE or -EncodedState TEXT' }
    return (ConvertFrom-Json -InputObject $text.TrimStart([char]0xFEFF))
}

function Get-SecretValue {
    param([string]$SecretId)
    return (Get-SECSecretValue -SecretId $SecretId -Region $state.region)
}

# --- restarts: recorded on disk, pending until the instance has started after the change

function Get-LastBootTime {
    return (Get-CimInstance -ClassName 'Win32_OperatingSystem' -Property 'LastBootUpTime').LastBootUpTime.ToUniversalTime()
}

function Read-RebootMarker {
    if (-not (Test-Path -LiteralPath $rebootMarker)) { return $null }
    return (ConvertFrom-Json -InputObject (Get-Content -LiteralPath $rebootMarker -Raw))
}

function Write-RebootMarker {
    param([string]$RecordedAt, [string]$RequestedAt, [string[]]$Reasons)
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

function Request-Reboot {
    # $true once per recorded change: the run then exits 3010 and SSM Agent restarts the instance.
    $marker = Read-RebootMarker
    if ($null -eq $marker -or $marker.requestedAt) { return $false }
    $now = [DateTime]::UtcNow.ToString('o')
    Write-RebootMarker -RecordedAt ([string]$marker.recordedAt) -RequestedAt $now -Reasons @($marker.reasons)
    $report.checks.reboot.requestedAt = $now
    return $true
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
    # The local account's password as this script last set it (DPAPI, machine scope), or $null.
    if (-not (Test-Path -LiteralPath $accountRecord)) { return $null }
    Use-DataProtection
    try { $plain = [Security.Cryptography.ProtectedData]::Unprotect([IO.File]::ReadAllBytes($accountRecord), $recordEntropy, [Security.Cryptography.DataProtectionScope]::LocalMachine) }
    catch {
        # Unreadable (another machine's image, damaged): treated as no record; it is written again.
        [void]$report.warnings.Add("the record of the mapped account's password could not be read ($($_.Exception.Message)): treated as missing")
        return $null
    }
    return [Text.Encoding]::UTF8.GetString($plain)
}

function Save-AccountRecord {
    # Machine-scope DPAPI lets any local process decrypt, so the file itself is for SYSTEM and
    # Administrators only: the ACL is set on the empty file before the protected bytes go in.
    param([string]$Value)
    Use-DataProtection
    $blob = [Security.Cryptography.ProtectedData]::Protect([Text.Encoding]::UTF8.GetBytes($Value), $recordEntropy, [Security.Cryptography.DataProtectionScope]::LocalMachine)
    $temporary = "$accountRecord.new"
    [IO.File]::WriteAllBytes($temporary, [byte[]]@())
    $acl = New-Object -TypeName System.Security.AccessControl.FileSecurity
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($sid in @('S-1-5-18', 'S-1-5-32-544')) {
        $identity = New-Object -TypeName System.Security.Principal.SecurityIdentifier -ArgumentList $sid
        $acl.AddAccessRule((New-Object -TypeName System.Security.AccessControl.FileSystemAccessRule -ArgumentList $identity, 'FullControl', 'Allow'))
    }
    Set-Acl -LiteralPath $temporary -AclObject $acl
    [IO.File]::WriteAllBytes($temporary, $blob)
    Move-Item -LiteralPath $temporary -Destination $accountRecord -Force
}

function Get-HeldPassword {
    # The distinct passwords the mappings of this user hold now (IIS decrypts them for SYSTEM).
    param([string]$Location, [string]$UserName)
    $held = [Collections.ArrayList]::new()
    foreach ($collection in @('manyToOneMappings', 'oneToOneMappings')) {
        foreach ($item in @(Get-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter "$certMapFilter/$collection" -Name 'Collection' | Where-Object { $null -ne $_ })) {
            $value = [string]$item.password
            if ($value -and [string]$item.userName -eq $UserName -and -not $held.Contains($value)) { [void]$held.Add($value) }
        }
    }
    return $held
}

function Get-MappedAccount {
    # The account the mappings log devices on as: @{ type; name; userName; password; rewrite; why }.
    # The password is the one the mappings already hold. A local account gets a password only when
    # it is created, or when no mapping holds one and none is recorded (then no mapping can be
    # using it); a rewrite of the mappings never changes it (docs/iis-mtls.md).
    param([string]$Location)
    $account = $state.mappedAccount
    if ($account.type -eq 'domain') {
        Assert-Match $account.domain '^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$' 'mappedAccount.domain'
        $userName = "$($account.domain)\$($account.name)"
        $secret = Get-SecretValue -SecretId $account.passwordSecretArn
        $held = @(Get-HeldPassword -Location $Location -UserName $userName)
        $result = @{ type = 'domain'; name = $account.name; userName = $userName; password = $secret.SecretString; rewrite = $false; why = '' }
        if ($held.Count -ne 1 -or $held[0] -cne $secret.SecretString) {
            $result.rewrite = $true
            $result.why = "the mappings do not hold version $($secret.VersionId) of the account's secret"
        }
        return $result
    }
    if ($account.type -ne 'local') { throw "desired state: mappedAccount.type '$($account.type)' is not local or domain" }
    $held = @(Get-HeldPassword -Location $Location -UserName $account.name)
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
                Set-LocalUser -Name $account.name -Password (ConvertTo-SecureString -String $result.password -AsPlainText -Force)
                Save-AccountRecord -Value $result.password  # after: a record always names the account's password
            }
        }
        $result.rewrite = $true
        $result.why = "no mapping holds the password of $($account.name)"
    }
    return $result
}

function Assert-MappingName {
    # The name addresses the mapping's rules in an IIS configuration filter: keep it a plain literal.
    param([string]$Name)
    if (-not $Name -or $Name -match "['\[\]\x00-\x1f]") { throw "desired state: mapping name '$Name' must be non-empty without ' [ ] or control characters" }
}

function ConvertFrom-IisEnum {
    # Enum attributes may read back as numbers: 1/2 -> the names given (permissionMode, certificateField).
    param($Value, [string[]]$Names)
    if ("$Value" -eq '1') { return $Names[0] }
    if ("$Value" -eq '2') { return $Names[1] }
    return "$Value"
}

function Read-ManyToOne {
    param([string]$Location)
    foreach ($item in @(Get-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter "$certMapFilter/manyToOneMappings" -Name 'Collection' | Where-Object { $null -ne $_ })) {
        $rules = @()
        if ("$($item.name)" -notmatch "['\[\]]") {
            $rules = @(Get-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter "$certMapFilter/manyToOneMappings/add[@name='$($item.name)']/rules" -Name 'Collection' |
                Where-Object { $null -ne $_ } | ForEach-Object {
                    [ordered]@{ certificateField = (ConvertFrom-IisEnum -Value $_.certificateField -Names 'Subject', 'Issuer'); certificateSubField = [string]$_.certificateSubField
                        matchCriteria = [string]$_.matchCriteria; compareCaseSensitive = (ConvertTo-Bool $_.compareCaseSensitive) }
                })
        }
        [ordered]@{ name = [string]$item.name; description = [string]$item.description; enabled = (ConvertTo-Bool $item.enabled)
            permissionMode = (ConvertFrom-IisEnum -Value $item.permissionMode -Names 'Allow', 'Deny'); userName = [string]$item.userName; rules = $rules }
    }
}

function Read-OneToOne {
    param([string]$Location)
    foreach ($item in @(Get-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter "$certMapFilter/oneToOneMappings" -Name 'Collection' | Where-Object { $null -ne $_ })) {
        [ordered]@{ certificate = [string]$item.certificate; enabled = (ConvertTo-Bool $item.enabled); userName = [string]$item.userName }
    }
}

function Read-ConfigValue {
    param([string]$Location, [string]$Filter, [string]$Name)
    $current = Get-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter $Filter -Name $Name
    if ($null -ne $current -and $null -ne $current.PSObject.Properties['Value']) { $current = $current.Value }
    if ($Name -eq 'authenticatedUserOverride' -and "$current" -match '^[01]$') { $current = $overrideNames[[int]"$current"] }
    return $current
}

function Test-SameValue {
    param($Current, $Wanted)
    if ($Wanted -is [bool]) { return ((ConvertTo-Bool $Current) -eq $Wanted) }
    return ((Format-FlagSet $Current) -eq (Format-FlagSet $Wanted))
}

function Get-LockdownSetting {
    # The section attributes the lock-down owns, in the order they are written inside the one
    # commit, after the mappings: mapping authentication on, anonymous off, SSL and a client
    # certificate required; then file access as the worker process at the two applications.
    $mapping = $state.authentication.clientCertificateMapping
    $settings = [Collections.ArrayList]::new()
    foreach ($location in $state.site.locations) {
        [void]$settings.Add(@{ location = $location; filter = $certMapFilter; name = 'enabled'; value = [bool]$mapping.enabled })
        [void]$settings.Add(@{ location = $location; filter = $certMapFilter; name = 'manyToOneCertificateMappingsEnabled'; value = [bool]$mapping.manyToOneCertificateMappingsEnabled })
        [void]$settings.Add(@{ location = $location; filter = $certMapFilter; name = 'oneToOneCertificateMappingsEnabled'; value = [bool]$mapping.oneToOneCertificateMappingsEnabled })
        [void]$settings.Add(@{ location = $location; filter = $anonymousFilter; name = 'enabled'; value = [bool]$state.authentication.anonymousEnabled })
        [void]$settings.Add(@{ location = $location; filter = 'system.webServer/security/access'; name = 'sslFlags'; value = [string]$state.access.sslFlags })
    }
    foreach ($application in $state.serverRuntime.locations) {
        [void]$settings.Add(@{ location = $application; filter = 'system.webServer/serverRuntime'; name = 'authenticatedUserOverride'; value = [string]$state.serverRuntime.authenticatedUserOverride })
    }
    return $settings
}

function Write-Lockdown {
    # ONE IIS commit: the mappings (all removed and the desired ones added, when they differ), then
    # the section attributes. applicationHost.config has all of it afterwards or none of it, so no
    # moment has a client certificate required with anonymous on, or mapping on without mappings.
    param([string]$Location, [object[]]$CurrentManyToOne, [object[]]$CurrentOneToOne, [object[]]$ManyToOne, [object[]]$OneToOne, [string]$Password, [bool]$Rewrite, [object[]]$Settings)
    $many = "$certMapFilter/manyToOneMappings"
    $one = "$certMapFilter/oneToOneMappings"
    Start-WebCommitDelay
    $committed = $false
    try {
        if ($Rewrite) {
            foreach ($old in $CurrentManyToOne) { Remove-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter $many -Name '.' -AtElement @{ name = $old.name } }
            foreach ($old in $CurrentOneToOne) { Remove-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter $one -Name '.' -AtElement @{ certificate = $old.certificate } }
            foreach ($new in $ManyToOne) {
                Add-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter $many -Name '.' -Value @{
                    name = $new.name; description = $new.description; enabled = $new.enabled; permissionMode = $new.permissionMode; userName = $new.userName; password = $Password }
                foreach ($newRule in $new.rules) {
                    Add-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter "$many/add[@name='$($new.name)']/rules" -Name '.' -Value @{
                        certificateField = $newRule.certificateField; certificateSubField = $newRule.certificateSubField; matchCriteria = $newRule.matchCriteria; compareCaseSensitive = $newRule.compareCaseSensitive }
                }
            }
            foreach ($new in $OneToOne) {
                Add-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter $one -Name '.' -Value @{ certificate = $new.certificate; enabled = $new.enabled; userName = $new.userName; password = $Password }
            }
        }
        foreach ($setting in $Settings) {
            Set-WebConfigurationProperty -PSPath $apphost -Location $setting.location -Filter $setting.filter -Name $setting.name -Value $setting.value
        }
        Stop-WebCommitDelay -Commit $true
        $committed = $true
    } finally {
        if (-not $committed) { try { Stop-WebCommitDelay -Commit $false } catch { Write-Log "Stop-WebCommitDelay: $($_.Exception.Message)" } }
    }
}

function Sync-Lockdown {
    $mapping = $state.authentication.clientCertificateMapping
    $locations = @($state.site.locations)
    $siteLocation = $locations[0]
    # The account first. Without it (Secrets Manager down, account error) the mappings stay as they
    # are and everything else below is still converged: anonymous off fails closed (401.2).
    $mapped = $null
    try { $mapped = Get-MappedAccount -Location $siteLocation }
    catch { Add-Problem "mapped account $($state.mappedAccount.name): $($_.Exception.Message) (the mappings were left as they are; the sections were still converged)" }
    $currentMany = @(Read-ManyToOne -Location $siteLocation)
    $currentOne = @(Read-OneToOne -Location $siteLocation)
    $wantedMany = @()
    $wantedOne = @()
    $items = [Collections.ArrayList]::new()
    $rewrite = $false
    if ($null -ne $mapped) {
        $wantedMany = @(foreach ($desiredMapping in $mapping.manyToOneMappings) {
            Assert-MappingName $desiredMapping.name
            [ordered]@{ name = [string]$desiredMapping.name; description = [string]$desiredMapping.description; enabled = [bool]$desiredMapping.enabled
                permissionMode = [string]$desiredMapping.permissionMode; userName = $mapped.userName
                rules = @(foreach ($desiredRule in $desiredMapping.rules) {
                    [ordered]@{ certificateField = [string]$desiredRule.certificateField; certificateSubField = [string]$desiredRule.certificateSubField
                        matchCriteria = [string]$desiredRule.matchCriteria; compareCaseSensitive = [bool]$desiredRule.compareCaseSensitive }
                }) }
        })
        $wantedOne = @(foreach ($device in $mapping.oneToOneMappings) { [ordered]@{ certificate = [string]$device.certificate; enabled = [bool]$device.enabled; userName = $mapped.userName } })
        # Same names, descriptions, flags, user names and rules in the same order (passwords: Get-MappedAccount).
        $sameMany = (ConvertTo-Json -InputObject $currentMany -Depth 6 -Compress) -eq (ConvertTo-Json -InputObject $wantedMany -Depth 6 -Compress)
        $sameOne = (ConvertTo-Json -InputObject $currentOne -Depth 4 -Compress) -eq (ConvertTo-Json -InputObject $wantedOne -Depth 4 -Compress)
        $why = @()
        if (-not $sameMany) { $why += "many-to-one [$(@($currentMany | ForEach-Object { $_.name }) -join ', ')] differ from [$(@($wantedMany | ForEach-Object { $_.name }) -join ', ')]" }
        if (-not $sameOne) { $why += "one-to-one: $($currentOne.Count) present, $($wantedOne.Count) desired" }
        if ($mapped.rewrite -and ($wantedMany.Count + $wantedOne.Count) -gt 0) { $why += $mapped.why }
        if (Test-Path -LiteralPath $pendingMarker) { $why += 'a previous rewrite did not finish' }
        if ($why.Count -gt 0) {
            if ($reportOnlyMode -or $mapped.password) {
                $rewrite = $true
                [void]$items.Add("client certificate mappings at '$siteLocation': $($why -join '; ')")
            } else { Add-Problem "client certificate mappings at '$siteLocation' differ ($($why -join '; ')) but no password is known for $($mapped.userName): not rewritten" }
        }
    }
    # The section attributes at every location.
    $settings = @(Get-LockdownSetting)
    $changed = [Collections.ArrayList]::new()
    $effective = @{}
    foreach ($setting in $settings) {
        $key = "$($setting.location)|$($setting.filter)|$($setting.name)"
        $current = Read-ConfigValue -Location $setting.location -Filter $setting.filter -Name $setting.name
        $effective[$key] = $current
        if ($setting.value -is [bool]) { $effective[$key] = ConvertTo-Bool $current }
        if (-not (Test-SameValue -Current $current -Wanted $setting.value)) {
            [void]$changed.Add($setting)
            [void]$items.Add("$($setting.filter)/@$($setting.name) at '$($setting.location)' is '$current', desired '$($setting.value)'")
            if (-not $reportOnlyMode) { $effective[$key] = $setting.value }
        }
    }
    Invoke-ConvergeAll -What @($items) -Fix {
        if ($rewrite) { $null = New-Item -ItemType File -Path $pendingMarker -Force }
        Write-Lockdown -Location $siteLocation -CurrentManyToOne $currentMany -CurrentOneToOne $currentOne -ManyToOne $wantedMany -OneToOne $wantedOne -Password $mapped.password -Rewrite $rewrite -Settings @($changed)
        if ($rewrite) { Remove-Item -LiteralPath $pendingMarker -Force }
    }
    $shown = $currentMany
    if ($rewrite -and -not $reportOnlyMode) { $shown = $wantedMany }
    $report.checks.mappings = @($shown | ForEach-Object { [ordered]@{ location = $siteLocation; name = $_.name; enabled = $_.enabled; permissionMode = $_.permissionMode; userName = $_.userName; rules = $_.rules } })
    $report.checks.binding.sslFlags = "$($effective["$siteLocation|system.webServer/security/access|sslFlags"])"
    $report.checks.anonymousEnabled = $effective["$siteLocation|$anonymousFilter|enabled"]
    $report.checks.locations = @(foreach ($where in @(@($locations) + @($state.serverRuntime.locations) | Select-Object -Unique)) {
        [ordered]@{ location = $where; sslFlags = $effective["$where|system.webServer/security/access|sslFlags"]; anonymousEnabled = $effective["$where|$anonymousFilter|enabled"]
            certificateMappingEnabled = $effective["$where|$certMapFilter|enabled"]; authenticatedUserOverride = $effective["$where|system.webServer/serverRuntime|authenticatedUserOverride"] }
    })
    # The applications inherit the site's mappings; entries of their own would shadow the site's.
    $siteJson = ConvertTo-Json -InputObject @(Read-ManyToOne -Location $siteLocation) -Depth 6 -Compress
    foreach ($child in @($locations | Select-Object -Skip 1)) {
        if ((ConvertTo-Json -InputObject @(Read-ManyToOne -Location $child) -Depth 6 -Compress) -ne $siteJson) {
            Add-Problem "location '$child' has many-to-one mappings of its own: remove them from its <location> so it inherits the site's"
        }
    }
}

# --- request filtering

function Sync-RequestFiltering {
    $site = $state.site.name
    $filter = 'system.webServer/security/requestFiltering/fileExtensions'
    $entries = @(Get-WebConfigurationProperty -PSPath $apphost -Location $site -Filter $filter -Name 'Collection' | Where-Object { $null -ne $_ })
    foreach ($extension in $state.requestFiltering.allowExtensions) {
        $entry = $entries | Where-Object { $_.fileExtension -eq $extension } | Select-Object -First 1
        if ($null -ne $entry -and (ConvertTo-Bool $entry.allowed)) { continue }
        Invoke-Converge "request filtering at '$site' does not allow $extension" {
            if ($null -ne $entry) { Remove-WebConfigurationProperty -PSPath $apphost -Location $site -Filter $filter -Name '.' -AtElement @{ fileExtension = $extension } }
            Add-WebConfigurationProperty -PSPath $apphost -Location $site -Filter $filter -Name '.' -Value @{ fileExtension = $extension; allowed = $true }
        }
    }
}

# --- W3C logging with the client certificate's facts (server-wide: sites/siteDefaults/logFile)

function Sync-Logging {
    $filter = 'system.applicationHost/sites/siteDefaults/logFile'
    $format = "$(Get-WebConfigurationProperty -PSPath $apphost -Filter $filter -Name 'logFormat')"
    if ($format -ne 'W3C') {
        Invoke-Converge "IIS logs are '$format', not W3C (custom fields need W3C)" { Set-WebConfigurationProperty -PSPath $apphost -Filter $filter -Name 'logFormat' -Value 'W3C' }
    }
    # Added to the fields that are there, never removed: an administrator's extra fields stay.
    $have = @("$(Get-WebConfigurationProperty -PSPath $apphost -Filter $filter -Name 'logExtFileFlags')" -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ })
    $missing = @($state.logging.fields | Where-Object { $have -notcontains $_ })
    foreach ($name in $missing) { Assert-Match -Value $name -Pattern '^[A-Za-z0-9]{1,32}$' -What 'log field' }
    if ($missing.Count -gt 0) {
        Invoke-Converge "IIS log fields lack $($missing -join ', ')" { Set-WebConfigurationProperty -PSPath $apphost -Filter $filter -Name 'logExtFileFlags' -Value (@($have + $missing) -join ',') }
    }
    $collection = "$filter/customFields"
    $present = @(Get-WebConfigurationProperty -PSPath $apphost -Filter $collection -Name 'Collection' | Where-Object { $null -ne $_ })
    foreach ($field in $state.logging.customFields) {
        Assert-Match -Value $field.logFieldName -Pattern '^[a-z][a-z0-9-]{0,31}$' -What 'log field name'
        Assert-Match -Value $field.sourceName -Pattern '^[A-Z][A-Z0-9_]{0,63}$' -What 'log field source'
        Assert-Match -Value $field.sourceType -Pattern '^ServerVariable$' -What 'log field source type'
        $entry = $present | Where-Object { $_.logFieldName -eq $field.logFieldName } | Select-Object -First 1
        if ($null -ne $entry -and "$($entry.sourceName)" -eq $field.sourceName -and "$($entry.sourceType)" -eq $field.sourceType) { continue }
        Invoke-Converge "IIS log field $($field.logFieldName) is not server variable $($field.sourceName)" {
            if ($null -ne $entry) { Remove-WebConfigurationProperty -PSPath $apphost -Filter $collection -Name '.' -AtElement @{ logFieldName = $field.logFieldName } }
            Add-WebConfigurationProperty -PSPath $apphost -Filter $collection -Name '.' -Value @{ logFieldName = $field.logFieldName; sourceName = $field.sourceName; sourceType = $field.sourceType }
        }
    }
    $report.checks.logging = [ordered]@{
        logFormat = "$(Get-WebConfigurationProperty -PSPath $apphost -Filter $filter -Name 'logFormat')"
        fields = "$(Get-WebConfigurationProperty -PSPath $apphost -Filter $filter -Name 'logExtFileFlags')"
        customFields = @(Get-WebConfigurationProperty -PSPath $apphost -Filter $collection -Name 'Collection' | Where-Object { $null -ne $_ } | ForEach-Object { "$($_.logFieldName)=$($_.sourceName)" })
    }
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
    # The thumbprint HTTP.sys must present; imports the PFX from Secrets Manager when it is missing.
    $server = $state.serverCertificate
    if ($null -eq $server) {
        $current = Get-HttpSysBinding -IpPort $state.httpSys.ipPort
        if ($null -eq $current) { throw 'no server certificate: set serverCertificateSecretArn (and its password secret) or bind one in HTTP.sys' }
        [void]$report.warnings.Add('serverCertificate is not set: the certificate bound in HTTP.sys stays')
        $kept = $current.certhash.ToUpperInvariant()
        Test-BoundCertificate -Thumbprint $kept
        return $kept
    }
    Assert-Match $server.store '^My$' 'serverCertificate.store'
    $pfxSecret = Get-SecretValue -SecretId $server.pfxSecretArn
    if ($null -ne $pfxSecret.SecretBinary) { $pfxBytes = $pfxSecret.SecretBinary.ToArray() }
    elseif ($pfxSecret.SecretString) { $pfxBytes = [Convert]::FromBase64String($pfxSecret.SecretString) }
    else { throw "secret $($server.pfxSecretArn) is empty: store the PFX as a binary secret" }
    $password = ConvertTo-SecureString -String (Get-SecretValue -SecretId $server.passwordSecretArn).SecretString -AsPlainText -Force
    $pfxFile = [IO.Path]::GetTempFileName()
    try {
        [IO.File]::WriteAllBytes($pfxFile, $pfxBytes)
        $leaf = @((Get-PfxData -FilePath $pfxFile -Password $password).EndEntityCertificates)[0]
        if ($null -eq $leaf) { throw "the PFX in $($server.pfxSecretArn) holds no end-entity certificate" }
        $thumbprint = $leaf.Thumbprint.ToUpperInvariant()
        if (-not (Test-Path -LiteralPath "Cert:\LocalMachine\$($server.store)\$thumbprint")) {
            Invoke-Converge "server certificate $thumbprint ($($leaf.Subject)) not in LocalMachine\$($server.store)" {
                $null = Import-PfxCertificate -FilePath $pfxFile -CertStoreLocation "Cert:\LocalMachine\$($server.store)" -Password $password
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
                $null = New-ItemProperty -Path $schannelKey -Name $name -PropertyType DWord -Value $wanted[$name] -Force
                Register-Reboot -Reason "SCHANNEL $name set to $($wanted[$name])"
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
        Set-Content -LiteralPath $attempt -Value ([DateTime]::UtcNow.ToString('o')) -Encoding ASCII
        $binding.AddSslCertificate($Thumbprint, 'My')
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

function Sync-BeaconInstaller {
    $installer = $state.beaconInstaller
    if ($null -eq $installer) { return }
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
        $null = Read-S3Object -BucketName $bucket -Key $key -File $file -Region $state.region
        $actual = (Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash
        if ($actual -ne $sha) {
            Remove-Item -LiteralPath $file -Force
            throw "beacon installer SHA-256 is $actual, desired $($sha): deleted, not run"
        }
        if ($kind -eq 'msi') {
            # Always silent and never restarting by itself; the operator's UI or restart switches go.
            $extra = @($given | Where-Object { $_ -notmatch '^/(q[nbrf]?[+-]?!?|quiet|passive|norestart|forcerestart|promptrestart)$' } | ForEach-Object { Format-ProcessArgument -Value $_ })
            $arguments = @('/i', (Format-ProcessArgument -Value $file), '/qn', '/norestart', '/l*v', (Format-ProcessArgument -Value (Join-Path $work "beacon-$sha.log"))) + $extra
            $program = 'msiexec.exe'
        } else {
            $arguments = @($given | ForEach-Object { Format-ProcessArgument -Value $_ })
            $program = $file
        }
        # Wait on the process itself (Start-Process -Wait also waits for every child it leaves).
        $process = Start-Process -FilePath $program -ArgumentList $arguments -PassThru
        $null = $process.Handle  # Windows PowerShell 5.1: without the handle ExitCode may read as empty
        if (-not $process.WaitForExit(1200000)) { throw "the beacon installer (process $($process.Id)) is still running after 20 minutes; it was left running" }
        $code = $process.ExitCode
        if ($code -eq 1641) {
            # Windows Installer has started a restart itself: record it and stop this run here.
            Register-Reboot -Reason "beacon installer $sha exited 1641 (it started a restart)" -AlreadyRequested
            $run.restarting = $true
        } elseif ($code -eq 3010) { Register-Reboot -Reason "beacon installer $sha exited 3010" }
        elseif ($code -ne 0) { throw "beacon installer exited with $code" }
        Set-Content -LiteralPath $marker -Value ([DateTime]::UtcNow.ToString('o')) -Encoding ASCII
    }
}

# --- report

function Send-Report {
    param([string]$Json, [string]$Group)
    $stream = $env:COMPUTERNAME
    try { $null = New-CWLLogStream -LogGroupName $Group -LogStreamName $stream -Region $state.region }
    catch { if ($_.Exception.Message -notmatch 'already exists') { throw } }
    $logEvent = New-Object -TypeName Amazon.CloudWatchLogs.Model.InputLogEvent
    $logEvent.Message = $Json
    $logEvent.Timestamp = [DateTime]::UtcNow
    $null = Write-CWLLogEvent -LogGroupName $Group -LogStreamName $stream -LogEvent $logEvent -Region $state.region
}

try {
    $null = New-Item -ItemType Directory -Path $dataDir -Force
    Write-Log "start (-ReportOnly: $reportOnlyMode)"
    $state = Read-DesiredState
    if ($state.schemaVersion -ne 1) { throw "desired state schemaVersion '$($state.schemaVersion)' is not supported (this script reads 1)" }
    $report.stack = $state.stack
    $report.enforcement = $state.enforcement
    $reportOnlyMode = $reportOnlyMode -or [bool]$state.reportOnly
    $report.reportOnly = $reportOnlyMode
    if (-not $LogGroupName) { $LogGroupName = $state.logGroupName }
} catch {
    $report.error = "$($_.Exception.Message) (line $($_.InvocationInfo.ScriptLineNumber))"
    Write-Log "failed: $($report.error)"
}

# The steps, in this order (tests/iis/test_converge_order.py holds it). Lock-down (mappings, mapping
# authentication on, anonymous off, SSL flags) is the first step that writes IIS configuration, so
# nothing that can fail later (Secrets Manager, the PFX, trust stores, netsh, the installer) keeps
# it from being checked. Each step has its own try/catch; a step that needs another runs only when
# that one ended ok, changed or drift, otherwise it is recorded as skipped with the reason.
$thumbprint = $null
if (-not $report.error) {
    if (Start-Step -Name 'reboot') {
        try { Read-RebootState; Complete-Step -Name 'reboot' } catch { Complete-Step -Name 'reboot' -Failure $_ }
    }
    if (Start-Step -Name 'features') {
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
    if (Start-Step -Name 'logging' -Requires 'webAdministration') {
        try { Sync-Logging; Complete-Step -Name 'logging' } catch { Complete-Step -Name 'logging' -Failure $_ }
    }
    if (Start-Step -Name 'serverCertificate') {
        try { $thumbprint = Sync-ServerCertificate; Complete-Step -Name 'serverCertificate' } catch { Complete-Step -Name 'serverCertificate' -Failure $_ }
    }
    if (Start-Step -Name 'trustStores') {
        try { Sync-TrustStores; Complete-Step -Name 'trustStores' } catch { Complete-Step -Name 'trustStores' -Failure $_ }
    }
    if (Start-Step -Name 'schannel') {
        try { Sync-Schannel; Complete-Step -Name 'schannel' } catch { Complete-Step -Name 'schannel' -Failure $_ }
    }
    if (Start-Step -Name 'rootStore') {
        try { Test-RootStore; Complete-Step -Name 'rootStore' } catch { Complete-Step -Name 'rootStore' -Failure $_ }
    }
    if (Start-Step -Name 'siteBinding' -Requires 'webAdministration', 'serverCertificate') {
        try { Sync-SiteBinding -Thumbprint $thumbprint; Complete-Step -Name 'siteBinding' } catch { Complete-Step -Name 'siteBinding' -Failure $_ }
    }
    if (Start-Step -Name 'httpSys' -Requires 'serverCertificate') {
        try { Sync-HttpSys -Thumbprint $thumbprint; Complete-Step -Name 'httpSys' } catch { Complete-Step -Name 'httpSys' -Failure $_ }
    }
    if (Start-Step -Name 'crl') {
        try { Test-CrlReachability; Complete-Step -Name 'crl' } catch { Complete-Step -Name 'crl' -Failure $_ }
    }
    if (Start-Step -Name 'beaconInstaller' -Requires 'lockdown') {
        try { Sync-BeaconInstaller; Complete-Step -Name 'beaconInstaller' } catch { Complete-Step -Name 'beaconInstaller' -Failure $_ }
    }
    # Whatever the installer wrote into the locked sections is undone in the same run.
    if ($run.results['beaconInstaller'] -eq 'changed' -and -not $run.restarting -and (Start-Step -Name 'lockdownAfterInstaller' -Requires 'beaconInstaller')) {
        try { Sync-Lockdown; Complete-Step -Name 'lockdownAfterInstaller' } catch { Complete-Step -Name 'lockdownAfterInstaller' -Failure $_ }
    }
}

$failed = @($report.steps | Where-Object { $_.status -eq 'failed' })
if (-not $report.error -and $failed.Count -gt 0) { $report.error = @($failed | ForEach-Object { "$($_.name): $($_.error)" }) -join ' | ' }
$exitCode = 0
if ($report.error) { $report.status = 'failed'; $exitCode = 1 }
elseif ($report.checks.reboot.pending) { $report.status = 'reboot-pending' }
elseif ($reportOnlyMode -and $report.drift.Count -gt 0) { $report.status = 'drift' }
elseif (-not $reportOnlyMode -and $report.changes.Count -gt 0) { $report.status = 'converged' }
else { $report.status = 'compliant' }
# Report-only reports and never restarts: drift and a pending restart exit 0 there. A converge run
# with a restart pending exits 3010 once per change (SSM Agent restarts the instance and runs the
# step again, which then finds it done), and 4 while it is still pending after that.
if ($report.checks.reboot.pending -and -not $reportOnlyMode) {
    try {
        if (Request-Reboot) { $exitCode = 3010 }
        elseif ($exitCode -eq 0) { $exitCode = 4 }
    } catch {
        [void]$report.warnings.Add("the restart request was not recorded: $($_.Exception.Message)")
        if ($exitCode -eq 0) { $exitCode = 4 }
    }
}
$report.finishedAt = [DateTime]::UtcNow.ToString('o')
$json = ConvertTo-Json -InputObject $report -Depth 8 -Compress
if ($LogGroupName) {
    try { Send-Report -Json $json -Group $LogGroupName }
    catch { [Console]::Error.WriteLine("warning: the report did not reach CloudWatch Logs group '$LogGroupName': $($_.Exception.Message)") }
}
Write-Log "end: $($report.status), exit $exitCode, $($report.changes.Count) changes, $($report.drift.Count) drift"
Write-Output $json
if ($exitCode -eq 1) { [Console]::Error.WriteLine("Set-BeaconMtls failed: $($report.error)") }
exit $exitCode
