<#
Set-BeaconMtls.ps1: converge a FlexNet beacon (Windows Server 2022, IIS 10, Windows PowerShell 5.1)
to the desired state of components/iis_state.py and print ONE JSON report on stdout.
The state is data only (-StatePath FILE or -EncodedState TEXT); no value of it runs as code.
Works as a file and embedded as  & { <this text> } -EncodedState $b64 -ReportOnly:$r
Exit codes: 0 compliant or converged, 1 failed, 3 drift found in report-only mode.
#>
[CmdletBinding()]
param([string]$StatePath, [string]$EncodedState, [switch]$ReportOnly, [string]$LogGroupName)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 serialises arrays as {"value":[...],"Count":n} while this type data exists.
try { Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue } catch { Write-Verbose 'no System.Array type data' }
$apphost = 'MACHINE/WEBROOT/APPHOST'
$certMapFilter = 'system.webServer/security/authentication/iisClientCertificateMappingAuthentication'
$dataDir = Join-Path $env:ProgramData 'flexnet-beacon'
$logFile = Join-Path $dataDir 'converge.log'
$pendingMarker = Join-Path $dataDir 'mappings-rewrite.pending'
$state = $null
$reportOnlyMode = [bool]$ReportOnly
$problems = [Collections.ArrayList]::new()
$report = [ordered]@{
    schemaVersion = 1
    stack = $null
    computer = $env:COMPUTERNAME
    reportOnly = $reportOnlyMode
    startedAt = [DateTime]::UtcNow.ToString('o')
    finishedAt = $null
    status = 'failed'
    changes = [Collections.ArrayList]::new()
    drift = [Collections.ArrayList]::new()
    warnings = [Collections.ArrayList]::new()
    rebootRequired = $false
    checks = [ordered]@{
        binding = [ordered]@{ site = $null; bindingInformation = $null; thumbprint = $null; subject = $null; notAfter = $null; sslFlags = $null }
        httpSys = $null
        anonymousEnabled = $null
        mappings = @()
        trustStores = [ordered]@{ certificates = @(); nonSelfSignedInRoot = @(); clientAuthTrustMode = $null }
        crl = @()
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
    param([string]$What, [scriptblock]$Fix)
    [void]$report.drift.Add($What)
    Write-Log "drift: $What"
    if ($reportOnlyMode) { return }
    $null = & $Fix
    [void]$report.changes.Add($What)
    Write-Log "changed: $What"
}

function Add-Problem {
    # Something the script cannot fix by itself: the run ends as failed and names it.
    param([string]$Message)
    [void]$problems.Add($Message)
    Write-Log "problem: $Message"
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

# --- features

function Sync-Features {
    $wanted = @($state.features.install)
    $unwanted = @($state.features.remove)
    $known = @(Get-WindowsFeature -Name ($wanted + $unwanted))
    $unknown = @($wanted + $unwanted | Where-Object { @($known.Name) -notcontains $_ })
    if ($unknown.Count -gt 0) { throw "desired state names unknown Windows features: $($unknown -join ', ')" }
    $missing = @($known | Where-Object { $wanted -contains $_.Name -and -not $_.Installed } | ForEach-Object { $_.Name })
    $extra = @($known | Where-Object { $unwanted -contains $_.Name -and $_.Installed } | ForEach-Object { $_.Name })
    if ($missing.Count -gt 0) {
        Invoke-Converge "Windows features not installed: $($missing -join ', ')" {
            $result = Install-WindowsFeature -Name $missing
            if (-not $result.Success) { throw "Install-WindowsFeature $($missing -join ', '): $($result.ExitCode)" }
            if ("$($result.RestartNeeded)" -eq 'Yes') { $report.rebootRequired = $true }
        }
    }
    if ($extra.Count -gt 0) {
        Invoke-Converge "Windows features that must be absent: $($extra -join ', ')" {
            $result = Uninstall-WindowsFeature -Name $extra
            if (-not $result.Success) { throw "Uninstall-WindowsFeature $($extra -join ', '): $($result.ExitCode)" }
            if ("$($result.RestartNeeded)" -eq 'Yes') { $report.rebootRequired = $true }
        }
    }
}

# --- beacon installer (optional)

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
        $installerArgs = @($installer.arguments | Where-Object { $null -ne $_ } | ForEach-Object { [string]$_ })
        if ($kind -eq 'msi') {
            $msiArgs = @('/i', $file, '/l*v', (Join-Path $work "beacon-$sha.log")) + $installerArgs
            $process = Start-Process -FilePath 'msiexec.exe' -ArgumentList $msiArgs -Wait -PassThru
        } elseif ($installerArgs.Count -gt 0) {
            $process = Start-Process -FilePath $file -ArgumentList $installerArgs -Wait -PassThru
        } else {
            $process = Start-Process -FilePath $file -Wait -PassThru
        }
        if (@(3010, 1641) -contains $process.ExitCode) { $report.rebootRequired = $true }
        elseif ($process.ExitCode -ne 0) { throw "beacon installer exited with $($process.ExitCode)" }
        Set-Content -LiteralPath $marker -Value ([DateTime]::UtcNow.ToString('o')) -Encoding ASCII
    }
}

# --- certificates

function ConvertFrom-Pem {
    param([string]$Pem)
    $body = ($Pem -replace '-----(BEGIN|END) CERTIFICATE-----', '') -replace '\s', ''
    return [Security.Cryptography.X509Certificates.X509Certificate2]::new([Convert]::FromBase64String($body))
}

function Sync-ServerCertificate {
    # The thumbprint HTTP.sys must present; imports the PFX from Secrets Manager when it is missing.
    $server = $state.serverCertificate
    if ($null -eq $server) {
        $current = Get-HttpSysBinding -IpPort $state.httpSys.ipPort
        if ($null -eq $current) { throw 'no server certificate: set serverCertificateSecretArn (and its password secret) or bind one in HTTP.sys' }
        [void]$report.warnings.Add('serverCertificate is not set: the certificate bound in HTTP.sys stays')
        return $current.certhash.ToUpperInvariant()
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
    # A certificate in Root that is not self-signed makes IIS answer 403.16 to every client.
    $notRoots = @(Get-ChildItem -LiteralPath 'Cert:\LocalMachine\Root' | Where-Object { $_.Subject -ne $_.Issuer })
    $report.checks.trustStores.nonSelfSignedInRoot = @($notRoots | ForEach-Object { [ordered]@{ thumbprint = $_.Thumbprint; subject = $_.Subject; issuer = $_.Issuer } })
    if ($notRoots.Count -gt 0) {
        Add-Problem "LocalMachine\Root holds certificates that are not self-signed (403.16); move them to LocalMachine\CA: $(@($notRoots | ForEach-Object { "$($_.Subject) [$($_.Thumbprint)]" }) -join '; ')"
    }
}

function Sync-Schannel {
    $key = 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL'
    $wanted = [int]$state.schannel.clientAuthTrustMode
    $current = (Get-ItemProperty -Path $key -Name 'ClientAuthTrustMode' -ErrorAction SilentlyContinue).ClientAuthTrustMode
    $report.checks.trustStores.clientAuthTrustMode = $current
    if ($current -ne $wanted) {
        Invoke-Converge "SCHANNEL ClientAuthTrustMode is '$current', desired $wanted" {
            $null = New-ItemProperty -Path $key -Name 'ClientAuthTrustMode' -PropertyType DWord -Value $wanted -Force
            $report.rebootRequired = $true
        }
        if (-not $reportOnlyMode) { $report.checks.trustStores.clientAuthTrustMode = $wanted }
    }
}

# --- IIS binding and HTTP.sys

function Sync-SiteBinding {
    $site = $state.site.name
    $port = [int]$state.site.httpsPort
    if ($null -eq (Get-Website | Where-Object { $_.Name -eq $site })) { throw "IIS site '$site' does not exist" }
    $information = "*:${port}:"
    $report.checks.binding.site = $site
    $report.checks.binding.bindingInformation = $information
    $binding = Get-WebBinding -Name $site -Protocol 'https' -Port $port | Where-Object { $_.bindingInformation -eq $information }
    if ($null -eq $binding) {
        Invoke-Converge "site '$site' has no https binding $information" { New-WebBinding -Name $site -Protocol 'https' -Port $port -IPAddress '*' -SslFlags 0 }
    } elseif ("$($binding.sslFlags)" -notin @('0', 'None', '')) {
        Add-Problem "https binding $information of '$site' has sslFlags '$($binding.sslFlags)' (SNI/CCS): the 0.0.0.0 HTTP.sys binding does not apply"
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
        $add = @('http', 'add', 'sslcert') + @(foreach ($name in $wanted.Keys) { if ($null -ne $wanted[$name]) { "$name=$($wanted[$name])" } })
        if ($null -ne $current) { Invoke-Netsh -Arguments @('http', 'delete', 'sslcert', "ipport=$($http.ipPort)") }
        try { Invoke-Netsh -Arguments $add }
        catch {
            if ($null -ne $current) {
                # Put the previous certificate back so HTTPS keeps answering; the next run retries.
                & netsh.exe @('http', 'add', 'sslcert', "ipport=$($http.ipPort)", "certhash=$($current.certhash)", "appid=$($current.appid)", "certstorename=$($current.certstorename)") | Out-Null
            }
            throw
        }
    }
    if (-not $reportOnlyMode) { $report.checks.httpSys = Get-HttpSysBinding -IpPort $http.ipPort }
}

# --- locked IIS sections (applicationHost.config with location paths; web.config gives 500.19)

function Sync-ConfigValue {
    param([string]$Location, [string]$Filter, [string]$Name, $Wanted)
    $current = Get-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter $Filter -Name $Name
    if ($null -ne $current -and $null -ne $current.PSObject.Properties['Value']) { $current = $current.Value }
    if ($Wanted -is [bool]) { $same = ((ConvertTo-Bool $current) -eq $Wanted) }
    else { $same = ((Format-FlagSet $current) -eq (Format-FlagSet $Wanted)) }
    if ($same) { return $current }
    Invoke-Converge "$Filter/@$Name at '$Location' is '$current', desired '$Wanted'" {
        Set-WebConfigurationProperty -PSPath $apphost -Location $Location -Filter $Filter -Name $Name -Value $Wanted
    }
    if ($reportOnlyMode) { return $current }
    return $Wanted
}

function Sync-Sections {
    $mapping = $state.authentication.clientCertificateMapping
    foreach ($location in $state.site.locations) {
        $flags = Sync-ConfigValue -Location $location -Filter 'system.webServer/security/access' -Name 'sslFlags' -Wanted ([string]$state.access.sslFlags)
        $anonymous = Sync-ConfigValue -Location $location -Filter 'system.webServer/security/authentication/anonymousAuthentication' -Name 'enabled' -Wanted ([bool]$state.authentication.anonymousEnabled)
        $null = Sync-ConfigValue -Location $location -Filter $certMapFilter -Name 'enabled' -Wanted ([bool]$mapping.enabled)
        $null = Sync-ConfigValue -Location $location -Filter $certMapFilter -Name 'manyToOneCertificateMappingsEnabled' -Wanted ([bool]$mapping.manyToOneCertificateMappingsEnabled)
        $null = Sync-ConfigValue -Location $location -Filter $certMapFilter -Name 'oneToOneCertificateMappingsEnabled' -Wanted ([bool]$mapping.oneToOneCertificateMappingsEnabled)
        if ($location -eq $state.site.name) {
            $report.checks.binding.sslFlags = "$flags"
            $report.checks.anonymousEnabled = (ConvertTo-Bool $anonymous)
        }
    }
}

# --- mapped account and client certificate mappings

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

function Get-MappedAccount {
    # The account the mappings log devices on as: @{ type; name; userName; password; rewrite }.
    $account = $state.mappedAccount
    if ($account.type -eq 'domain') {
        Assert-Match $account.domain '^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$' 'mappedAccount.domain'
        $secret = Get-SecretValue -SecretId $account.passwordSecretArn
        $versionFile = Join-Path $dataDir 'mapped-account-secret.version'
        $known = $null
        if (Test-Path -LiteralPath $versionFile) { $known = (Get-Content -LiteralPath $versionFile -Raw).Trim() }
        return @{ type = 'domain'; name = $account.name; userName = "$($account.domain)\$($account.name)"; password = $secret.SecretString
            rewrite = ($known -ne $secret.VersionId); version = $secret.VersionId; versionFile = $versionFile }
    }
    if ($account.type -ne 'local') { throw "desired state: mappedAccount.type '$($account.type)' is not local or domain" }
    $result = @{ type = 'local'; name = $account.name; userName = $account.name; password = $null; rewrite = $false }
    $user = Get-LocalUser -Name $account.name -ErrorAction SilentlyContinue
    if ($null -eq $user) {
        Invoke-Converge "local user $($account.name) for the certificate mappings is missing" {
            $null = New-Item -ItemType File -Path $pendingMarker -Force
            $result.password = New-RandomPassword
            $secure = ConvertTo-SecureString -String $result.password -AsPlainText -Force
            $null = New-LocalUser -Name $account.name -Password $secure -PasswordNeverExpires -AccountNeverExpires -UserMayNotChangePassword -Description 'FlexNet beacon IIS certificate mapping account'
        }
        $result.rewrite = $true
        return $result
    }
    if (-not $user.Enabled) { Invoke-Converge "local user $($account.name) is disabled" { Enable-LocalUser -Name $account.name } }
    if ($null -ne $user.PasswordExpires) { Invoke-Converge "local user $($account.name) has an expiring password" { Set-LocalUser -Name $account.name -PasswordNeverExpires $true } }
    if (@(Get-LocalGroupMember -SID 'S-1-5-32-544' | Where-Object { $_.SID -eq $user.SID }).Count -gt 0) {
        Invoke-Converge "local user $($account.name) is in Administrators" { Remove-LocalGroupMember -SID 'S-1-5-32-544' -Member $account.name }
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

function Write-Mappings {
    # Remove every current mapping and add the desired ones in one commit: never append duplicates.
    param([string]$Location, [object[]]$CurrentManyToOne, [object[]]$CurrentOneToOne, [object[]]$ManyToOne, [object[]]$OneToOne, [string]$Password)
    $many = "$certMapFilter/manyToOneMappings"
    $one = "$certMapFilter/oneToOneMappings"
    Start-WebCommitDelay
    $committed = $false
    try {
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
        Stop-WebCommitDelay -Commit $true
        $committed = $true
    } finally {
        if (-not $committed) { try { Stop-WebCommitDelay -Commit $false } catch { Write-Log "Stop-WebCommitDelay: $($_.Exception.Message)" } }
    }
}

function Sync-Mappings {
    $mapping = $state.authentication.clientCertificateMapping
    $locations = @($state.site.locations)
    $siteLocation = $locations[0]
    $mapped = Get-MappedAccount
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
    $currentMany = @(Read-ManyToOne -Location $siteLocation)
    $currentOne = @(Read-OneToOne -Location $siteLocation)
    # Same names, descriptions, flags, user names and rules in the same order (passwords are not compared).
    $sameMany = (ConvertTo-Json -InputObject $currentMany -Depth 6 -Compress) -eq (ConvertTo-Json -InputObject $wantedMany -Depth 6 -Compress)
    $sameOne = (ConvertTo-Json -InputObject $currentOne -Depth 4 -Compress) -eq (ConvertTo-Json -InputObject $wantedOne -Depth 4 -Compress)
    $pending = Test-Path -LiteralPath $pendingMarker
    $shown = $currentMany
    if (-not ($sameMany -and $sameOne) -or $mapped.rewrite -or $pending) {
        $why = @()
        if (-not $sameMany) { $why += "many-to-one [$(@($currentMany | ForEach-Object { $_.name }) -join ', ')] differ from [$(@($wantedMany | ForEach-Object { $_.name }) -join ', ')]" }
        if (-not $sameOne) { $why += "one-to-one: $($currentOne.Count) present, $($wantedOne.Count) desired" }
        if ($mapped.rewrite) { $why += "account $($mapped.userName) is new or its password changed" }
        if ($pending) { $why += 'a previous rewrite did not finish' }
        Invoke-Converge "client certificate mappings at '$siteLocation': $($why -join '; ')" {
            $null = New-Item -ItemType File -Path $pendingMarker -Force
            $password = $mapped.password
            if ($mapped.type -eq 'local' -and -not $password) {
                # A rewrite resets the local account's password; it never leaves this instance.
                $password = New-RandomPassword
                Set-LocalUser -Name $mapped.name -Password (ConvertTo-SecureString -String $password -AsPlainText -Force)
            }
            Write-Mappings -Location $siteLocation -CurrentManyToOne $currentMany -CurrentOneToOne $currentOne -ManyToOne $wantedMany -OneToOne $wantedOne -Password $password
            if ($mapped.type -eq 'domain') { Set-Content -LiteralPath $mapped.versionFile -Value $mapped.version -Encoding ASCII }
            Remove-Item -LiteralPath $pendingMarker -Force
        }
        if (-not $reportOnlyMode) { $shown = $wantedMany }
    }
    $report.checks.mappings = @($shown | ForEach-Object { [ordered]@{ location = $siteLocation; name = $_.name; enabled = $_.enabled; permissionMode = $_.permissionMode; userName = $_.userName; rules = $_.rules } })
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
    $reportOnlyMode = $reportOnlyMode -or [bool]$state.reportOnly
    $report.reportOnly = $reportOnlyMode
    if (-not $LogGroupName) { $LogGroupName = $state.logGroupName }
    Sync-Features
    if (-not (Get-Module -ListAvailable -Name 'WebAdministration')) { throw 'the WebAdministration module is missing (feature Web-Scripting-Tools)' }
    Import-Module -Name 'WebAdministration'
    Sync-BeaconInstaller
    $thumbprint = Sync-ServerCertificate
    Sync-TrustStores
    Sync-Schannel
    Sync-SiteBinding
    Sync-HttpSys -Thumbprint $thumbprint
    $report.checks.binding.thumbprint = $thumbprint
    $bound = Get-Item -LiteralPath "Cert:\LocalMachine\My\$thumbprint" -ErrorAction SilentlyContinue
    if ($null -ne $bound) {
        $report.checks.binding.subject = $bound.Subject
        $report.checks.binding.notAfter = $bound.NotAfter.ToUniversalTime().ToString('o')
        if ($bound.NotAfter -lt (Get-Date)) { Add-Problem "server certificate $thumbprint expired on $($report.checks.binding.notAfter)" }
        elseif ($bound.NotAfter -lt (Get-Date).AddDays(30)) { [void]$report.warnings.Add("server certificate $thumbprint expires on $($report.checks.binding.notAfter)") }
        if (-not $bound.HasPrivateKey) { Add-Problem "server certificate $thumbprint in LocalMachine\My has no private key" }
    }
    Sync-Sections
    Sync-Mappings
    Sync-RequestFiltering
    Test-CrlReachability
    if ($problems.Count -gt 0) { throw ($problems -join ' | ') }
} catch {
    $report.error = "$($_.Exception.Message) (line $($_.InvocationInfo.ScriptLineNumber))"
    Write-Log "failed: $($report.error)"
}

$exitCode = 0
if ($report.error) { $report.status = 'failed'; $exitCode = 1 }
elseif ($reportOnlyMode -and $report.drift.Count -gt 0) { $report.status = 'drift'; $exitCode = 3 }
elseif (-not $reportOnlyMode -and $report.changes.Count -gt 0) { $report.status = 'converged' }
else { $report.status = 'compliant' }
$report.finishedAt = [DateTime]::UtcNow.ToString('o')
$json = ConvertTo-Json -InputObject $report -Depth 8 -Compress
if ($LogGroupName) {
    try { Send-Report -Json $json -Group $LogGroupName }
    catch { [Console]::Error.WriteLine("warning: the report did not reach CloudWatch Logs group '$LogGroupName': $($_.Exception.Message)") }
}
Write-Log "end: $($report.status), $($report.changes.Count) changes, $($report.drift.Count) drift"
Write-Output $json
if ($exitCode -eq 1) { [Console]::Error.WriteLine("Set-BeaconMtls failed: $($report.error)") }
exit $exitCode
