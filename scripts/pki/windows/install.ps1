<#
install.ps1: install a FlexNet inventory agent device certificate from this onboarding kit
(python -m scripts.pki bundle) and turn on the agent preference AddClientCertificateAndKey.
Windows PowerShell 5.1, run as Administrator. This script is the same in every kit; everything
about the device is data, read from install.json next to it, and no value of it runs as code.

  powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\install.ps1 [-PfxPassword $secure] [-CheckOnly] [-ProbeBeacons]

What it does, in order, one line of output per step:
  1. checks each CA certificate file against its thumbprint in install.json, then imports the
     self-signed ones into Cert:\LocalMachine\Root and the others into Cert:\LocalMachine\CA;
  2. imports device.pfx into Cert:\LocalMachine\My (the private key is NOT exportable; the
     password comes from -PfxPassword, else a prompt), after checking its thumbprint;
  3. sets AddClientCertificateAndKey = True (REG_SZ) under the agent's Common preferences:
     HKLM:\SOFTWARE\Wow6432Node\ManageSoft Corp\ManageSoft\Common on 64-bit Windows,
     HKLM:\SOFTWARE\ManageSoft Corp\ManageSoft\Common on 32-bit;
  4. checks the result: the certificate is in LocalMachine\My with its private key, its chain
     builds on this machine for Client Authentication, the preference reads back as set; with
     -ProbeBeacons also an HTTPS request to each beacon presenting the certificate.
-CheckOnly changes nothing and reports what is missing. Exit 0 when everything is in place,
1 otherwise. Sources of the locations: docs/onboarding.md of the flexnet-beacon project.
#>
[CmdletBinding()]
param([System.Security.SecureString]$PfxPassword, [switch]$CheckOnly, [switch]$ProbeBeacons)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$PreferenceName = 'AddClientCertificateAndKey'
$PreferenceValue = 'True'
$ClientAuthOid = '1.3.6.1.5.5.7.3.2'
$SafeFileName = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
$ThumbprintPattern = '^[0-9A-F]{40}$'
$BeaconUrlPattern = '^https://[a-z0-9.-]{1,253}/ManageSoftDL/$'
$kitDir = $PSScriptRoot
$script:problems = 0
$script:deviceTarget = $null  # Cert:\LocalMachine\My\<thumbprint> once the device certificate is there

function Write-Step {
    # Output goes to the script's own output: functions that print are never assigned from.
    param([string]$Status, [string]$Text)
    if ($Status -eq 'FAIL' -or $Status -eq 'MISSING') { $script:problems += 1 }
    Write-Output ('{0,-9} {1}' -f $Status, $Text)
}

function Test-Administrator {
    $identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object -TypeName System.Security.Principal.WindowsPrincipal -ArgumentList $identity
    return $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Get-KitFile {
    param([string]$Name)
    if ($Name -notmatch $SafeFileName) { throw "install.json names the file '$Name'; expected a plain file name of this kit" }
    $path = Join-Path -Path $kitDir -ChildPath $Name
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) { throw "the kit has no file $Name (copy the whole windows folder)" }
    return $path
}

function Get-Thumbprint {
    param([string]$Text, [string]$What)
    $value = $Text.ToUpperInvariant()
    if ($value -notmatch $ThumbprintPattern) { throw "install.json: $What thumbprint '$Text' is not 40 hex digits" }
    return $value
}

function Get-AgentCommonKey {
    if ([System.Environment]::Is64BitOperatingSystem) {
        return 'HKLM:\SOFTWARE\Wow6432Node\ManageSoft Corp\ManageSoft\Common'
    }
    return 'HKLM:\SOFTWARE\ManageSoft Corp\ManageSoft\Common'
}

function Read-Preference {
    param([string]$Key)
    if (-not (Test-Path -LiteralPath $Key)) { return $null }
    $item = Get-Item -LiteralPath $Key
    if ($item.GetValueNames() -notcontains $PreferenceName) { return $null }
    return @{ value = [string]$item.GetValue($PreferenceName); kind = [string]$item.GetValueKind($PreferenceName) }
}

function Install-CaCertificates {
    param($Entries)
    foreach ($entry in @($Entries)) {
        $store = [string]$entry.store
        if ($store -ne 'Root' -and $store -ne 'CA') { throw "install.json: store '$store' is neither Root nor CA" }
        $thumbprint = Get-Thumbprint -Text ([string]$entry.thumbprint) -What ([string]$entry.file)
        $path = Get-KitFile -Name ([string]$entry.file)
        $cert = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList $path
        if ($cert.Thumbprint -ne $thumbprint) { throw "$($entry.file) has thumbprint $($cert.Thumbprint); install.json says $thumbprint (a changed kit)" }
        $selfSigned = $cert.Subject -eq $cert.Issuer
        if (($store -eq 'Root') -ne $selfSigned) { throw "$($entry.file): only self-signed certificates go to Root, others to CA" }
        $location = 'Cert:\LocalMachine\' + $store
        $target = Join-Path -Path $location -ChildPath $thumbprint
        $label = "$($cert.Subject) ($thumbprint) in LocalMachine\$store"
        if (Test-Path -LiteralPath $target) {
            Write-Step 'present' $label
        } elseif ($CheckOnly) {
            Write-Step 'MISSING' $label
        } else {
            Import-Certificate -FilePath $path -CertStoreLocation $location | Out-Null
            Write-Step 'imported' $label
        }
    }
}

function Install-DeviceCertificate {
    param($Pfx)
    $thumbprint = Get-Thumbprint -Text ([string]$Pfx.thumbprint) -What 'device.pfx'
    $path = Get-KitFile -Name ([string]$Pfx.file)
    $target = Join-Path -Path 'Cert:\LocalMachine\My' -ChildPath $thumbprint
    $label = "device certificate $($Pfx.subject) ($thumbprint) in LocalMachine\My"
    if (Test-Path -LiteralPath $target) {
        Write-Step 'present' $label
        $script:deviceTarget = $target
        return
    }
    if ($CheckOnly) {
        Write-Step 'MISSING' $label
        return
    }
    $password = $PfxPassword
    if ($null -eq $password) {
        $password = Read-Host -Prompt "Password of $($Pfx.file) (passwords.csv or PKI_PASSWORD of the kit's maker)" -AsSecureString
    }
    $content = Get-PfxData -FilePath $path -Password $password
    $leaf = @($content.EndEntityCertificates)
    if ($leaf.Count -ne 1 -or $leaf[0].Thumbprint -ne $thumbprint) { throw "device.pfx does not hold the certificate $thumbprint that install.json names (a changed kit)" }
    # No -Exportable: the private key cannot be exported from this machine again.
    Import-PfxCertificate -FilePath $path -CertStoreLocation 'Cert:\LocalMachine\My' -Password $password | Out-Null
    Write-Step 'imported' "$label, private key not exportable"
    $script:deviceTarget = $target
}

function Set-AgentPreference {
    $key = Get-AgentCommonKey
    $label = "$key\$PreferenceName = $PreferenceValue (REG_SZ)"
    $current = Read-Preference -Key $key
    if ($null -ne $current -and $current.value -eq $PreferenceValue -and $current.kind -eq 'String') {
        Write-Step 'present' $label
        return
    }
    if ($CheckOnly) {
        Write-Step 'MISSING' $label
        return
    }
    if (-not (Test-Path -LiteralPath $key)) {
        New-Item -Path $key -Force | Out-Null
        Write-Step 'note' "created $key (no FlexNet inventory agent installed yet: install it with the kit's mgssetup.ini lines)"
    }
    New-ItemProperty -LiteralPath $key -Name $PreferenceName -PropertyType String -Value $PreferenceValue -Force | Out-Null
    $before = 'absent'
    if ($null -ne $current) { $before = "$($current.value) ($($current.kind))" }
    Write-Step 'set' "$label (was $before)"
}

function Test-Result {
    param([string]$DeviceTarget, $BeaconUrls)
    if (-not $DeviceTarget -or -not (Test-Path -LiteralPath $DeviceTarget)) { Write-Step 'FAIL' 'the device certificate is not in LocalMachine\My'; return }
    $cert = Get-Item -LiteralPath $DeviceTarget
    if ($cert.HasPrivateKey) { Write-Step 'ok' 'the device certificate has its private key' } else { Write-Step 'FAIL' 'the device certificate has no private key on this machine' }
    $chain = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Chain -ArgumentList $true
    $chain.ChainPolicy.RevocationMode = [System.Security.Cryptography.X509Certificates.X509RevocationMode]::NoCheck
    $null = $chain.ChainPolicy.ApplicationPolicy.Add((New-Object -TypeName System.Security.Cryptography.Oid -ArgumentList $ClientAuthOid))
    if ($chain.Build($cert)) {
        Write-Step 'ok' "the chain builds for Client Authentication ($($chain.ChainElements.Count) certificates; revocation is the beacon's check)"
    } else {
        $why = ($chain.ChainStatus | ForEach-Object { $_.StatusInformation.Trim() }) -join '; '
        Write-Step 'FAIL' "the chain does not build for Client Authentication: $why"
    }
    $current = Read-Preference -Key (Get-AgentCommonKey)
    if ($null -ne $current -and $current.value -eq $PreferenceValue -and $current.kind -eq 'String') { Write-Step 'ok' "$PreferenceName reads back as $PreferenceValue" } else { Write-Step 'FAIL' "$PreferenceName does not read back as $PreferenceValue" }
    if (-not $ProbeBeacons) { return }
    foreach ($url in @($BeaconUrls)) {
        $text = [string]$url
        if ($text -notmatch $BeaconUrlPattern) { throw "install.json: beacon URL '$text' is not https://HOST/ManageSoftDL/" }
        try {
            $response = Invoke-WebRequest -Uri $text -Certificate $cert -UseBasicParsing -TimeoutSec 30
            Write-Step 'ok' "$text answered HTTP $($response.StatusCode) to this certificate"
        } catch {
            Write-Step 'FAIL' "$text refused or unreachable: $($_.Exception.Message)"
        }
    }
}

try {
    if (-not $CheckOnly -and -not (Test-Administrator)) { throw 'run this script as Administrator (it writes LocalMachine stores and HKLM)' }
    $data = Get-Content -LiteralPath (Get-KitFile -Name 'install.json') -Raw | ConvertFrom-Json
    if ($data.schemaVersion -ne 1) { throw "install.json has schemaVersion $($data.schemaVersion); this script reads 1" }
    Write-Output "FlexNet inventory agent onboarding kit: device $($data.device), stack $($data.stack)"
    Install-CaCertificates -Entries $data.caCertificates
    Install-DeviceCertificate -Pfx $data.pfx
    Set-AgentPreference
    Test-Result -DeviceTarget $script:deviceTarget -BeaconUrls $data.beaconUrls
} catch {
    Write-Step 'FAIL' $_.Exception.Message
}
if ($script:problems -gt 0) {
    Write-Output "result: $($script:problems) problem(s)"
    exit 1
}
Write-Output 'result: ok'
exit 0
