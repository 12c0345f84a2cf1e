<#
install.ps1: verify this onboarding kit (python -m scripts.pki bundle, kit format 2), then install the
FlexNet inventory agent device certificate it holds and turn on the agent's TLS preferences.
Windows PowerShell 5.1 on .NET Framework 4.6.2 or later, as Administrator or as SYSTEM. The script is
the same in every kit; everything about the device is data in install.json, signed by the PKI's kit
signer, and no value of it runs as code. docs/onboarding-install.md has the deployment examples
(interactive, Intune Win32 app, Configuration Manager, Group Policy startup script) and the sources.

  powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File .\install.ps1 -SignerThumbprint <40 hex> -PfxPasswordFile .\device.password
  powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\install.ps1 -SignerThumbprint <40 hex>   (at a console: asks for the password)
  powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\install.ps1 -SignerThumbprint <40 hex> -CheckOnly [-ProbeBeacons]

  -SignerThumbprint  the kit signer's SHA-1 thumbprint, as bundle printed it; required, -CheckOnly too.
  -PfxPasswordFile   a UTF-8 text file whose first line is the PFX password; deleted when the script
                     ends, whatever happened. Inside the kit folder its name must end in .password.
  -PfxPassword       the password as a SecureString (interactive use).
  -KeepPfx           keep device.pfx after a successful import (by default it is deleted).
  -CheckOnly         change nothing: verify the kit and report what is missing.
  -ProbeBeacons      also an HTTPS request to each beacon presenting the device certificate.

No password is ever asked for unless a person is at a console ([Environment]::UserInteractive and
not SYSTEM): unattended (Intune, Configuration Manager, Group Policy run it as SYSTEM) give
-PfxPasswordFile; without a password the script stops with exit 1 and says which parameter to give.

What it does, in order, one line of output per step:
  0. verifies the kit before anything changes: kit-signer.cer has the thumbprint -SignerThumbprint;
     install.json.sig is that signer's ECDSA P-256 signature over install.json; every file install.json
     lists is a regular file (not a link) of its size and SHA-256, read once and kept, so what is
     imported is what was checked; no other file is in the folder; the PFX opens with the password,
     holds the certificate install.json names, and its chain runs through the kit's CA certificates,
     from the issuer install.json names to a root of the kit.
  1. imports the kit's CA certificates into Cert:\LocalMachine\Root (roots) or \CA;
  2. imports the device certificate and its key into Cert:\LocalMachine\My, key not exportable;
  3. sets AddClientCertificateAndKey, CheckServerCertificate and CheckCertificateRevocation = True
     (REG_SZ) under the agent's Common preferences, [Registry]\ManageSoft\Common, and corrects every
     component key under [Registry]\ManageSoft that overrides one of them with another value;
  4. once the new certificate is in LocalMachine\My with its key and its chain checked: removes from
     LocalMachine\My the earlier certificates install.json lists under supersedes (only those), then
     deletes device.pfx unless -KeepPfx;
  5. checks the result; with -ProbeBeacons also each beacon.

Exit codes: 0 everything is in place; 1 anything failed or is missing (the lines say what). 3010
(restart required) never occurs: certificate stores and agent preferences take effect without a
restart. A failure in step 0 changes nothing. A later failure stops the run at that step: the steps
before it are each complete (a certificate is in its store or not, a preference is set or not) and
a new run of the same kit skips them; superseded certificates and device.pfx are removed only after
the new certificate is in place and checked. The password file is deleted in every case.
#>
[CmdletBinding()]
param(
    [string]$SignerThumbprint,
    [string]$PfxPasswordFile,
    [System.Security.SecureString]$PfxPassword,
    [switch]$KeepPfx,
    [switch]$CheckOnly,
    [switch]$ProbeBeacons
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# What a kit of format 2 is (the Python side writes it: scripts/pki/bundle_files.py).
$KitSchemaVersion = 2
$UnlistedKitFiles = @('install.ps1', 'install.json', 'install.json.sig', 'kit-signer.cer')
$PfxFileName = 'device.pfx'
$AgentIniFileName = 'mgssetup.ini'
$CaFilePattern = '^[A-Za-z0-9][A-Za-z0-9._-]{0,59}\.cer$'
$PasswordFileExtension = '.password'
$SafeFileName = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
$ThumbprintPattern = '^[0-9A-F]{40}$'
$Sha256Pattern = '^[0-9a-f]{64}$'
$SignatureBytes = 64                                  # IEEE P1363 r || s of an ECDSA P-256 signature
$SignatureTextLength = 88                             # those 64 bytes in base64
$SignatureTextPattern = '^[A-Za-z0-9+/]{86}==$'
$MaxKitFileBytes = 1048576                            # any listed file and install.json (a PFX is a few KiB)
$MaxSignerFileBytes = 65536
$MaxSignatureFileBytes = 1024
$MaxPasswordFileBytes = 4096
$BeaconUrlPattern = '^https://[a-z0-9.-]{1,253}/ManageSoftDL/$'
$ClientAuthOid = '1.3.6.1.5.5.7.3.2'

# The agent's preferences ([Registry] and the preference pages: docs/onboarding-install.md).
$AgentKeyPath = 'SOFTWARE\ManageSoft Corp\ManageSoft'
$CommonKeyName = 'Common'
$Preferences = [ordered]@{ AddClientCertificateAndKey = 'True'; CheckServerCertificate = 'True'; CheckCertificateRevocation = 'True' }

$kitDir = $PSScriptRoot
$script:problems = 0

function Write-Step {
    # One line per step on standard output (docs/onboarding-install.md: how deployments keep it).
    # Functions that print are only called as statements: assigned from, their lines would become data.
    param([string]$Status, [string]$Text)
    if ($Status -eq 'FAIL' -or $Status -eq 'MISSING') { $script:problems += 1 }
    Write-Output ('{0,-9} {1}' -f $Status, $Text)
}

function Test-Administrator {
    $identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object -TypeName System.Security.Principal.WindowsPrincipal -ArgumentList $identity
    return $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Test-InteractiveUser {
    # A prompt needs a person at a console: never as SYSTEM (Intune, Configuration Manager, Group
    # Policy startup scripts) nor in a non-interactive session, where Read-Host fails or waits for ever.
    if (-not [Environment]::UserInteractive) { return $false }
    return -not [System.Security.Principal.WindowsIdentity]::GetCurrent().IsSystem
}

function ConvertTo-SignerThumbprint {
    # Typed or pasted by a person: spaces and the invisible marks certificate dialogs copy are dropped.
    param([string]$Text)
    $value = ($Text -replace '[\s\u200E\u200F]', '').ToUpperInvariant()
    if ($value -cnotmatch $ThumbprintPattern) { throw "-SignerThumbprint '$Text' is not a thumbprint: expected the 40 hex digits bundle printed" }
    return $value
}

function Test-Thumbprint {
    param([string]$Text, [string]$What)
    if ($Text -cnotmatch $ThumbprintPattern) { throw "install.json: $What '$Text' is not 40 uppercase hex digits" }
    return $Text
}

function Test-InFolder {
    param([string]$Path, [string]$Folder)
    $parent = [IO.Path]::GetDirectoryName([IO.Path]::GetFullPath($Path))
    return $parent.TrimEnd('\') -eq ([IO.Path]::GetFullPath($Folder)).TrimEnd('\')
}

function Read-BoundedFile {
    # The bytes of one regular file, at most $Limit of them. A reparse point (symbolic link, junction)
    # is refused, so a link planted in the folder is not followed; the size is what was read.
    param([string]$Path, [long]$Limit, [string]$What)
    $info = New-Object -TypeName System.IO.FileInfo -ArgumentList $Path
    if (-not $info.Exists) { throw "$What is missing ($Path): copy the kit's whole windows folder" }
    if (($info.Attributes -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) { throw "$What is a link (reparse point), not a file: refused" }
    if ($info.Length -gt $Limit) { throw "$What has $($info.Length) bytes; expected at most $Limit" }
    $buffer = New-Object -TypeName byte[] -ArgumentList ([int]$Limit + 1)
    $total = 0
    $stream = New-Object -TypeName System.IO.FileStream -ArgumentList $Path, ([System.IO.FileMode]::Open), ([System.IO.FileAccess]::Read), ([System.IO.FileShare]::Read)
    try {
        while ($total -lt $buffer.Length) {
            $read = $stream.Read($buffer, $total, $buffer.Length - $total)
            if ($read -eq 0) { break }
            $total += $read
        }
    } finally {
        $stream.Dispose()
    }
    if ($total -gt $Limit) { throw "$What has more than $Limit bytes" }
    $bytes = New-Object -TypeName byte[] -ArgumentList $total
    [Array]::Copy($buffer, $bytes, $total)
    return , $bytes
}

function Get-Sha256Hex {
    param([byte[]]$Bytes)
    $sha = [Security.Cryptography.SHA256]::Create()
    try { $hash = $sha.ComputeHash($Bytes) } finally { $sha.Dispose() }
    return [BitConverter]::ToString($hash).Replace('-', '').ToLowerInvariant()
}

function New-KitCertificate {
    param([byte[]]$Bytes, [string]$What)
    try {
        return [Security.Cryptography.X509Certificates.X509Certificate2]::new($Bytes)
    } catch {
        throw "$What is not a certificate: $($_.Exception.Message)"
    }
}

function ConvertFrom-SignatureText {
    # One ASCII line (a final line break allowed): base64 of the 64-byte IEEE P1363 signature r || s,
    # the form ECDsa.VerifyData takes.
    param([byte[]]$Bytes)
    $text = [Text.Encoding]::ASCII.GetString($Bytes)
    if ($text.EndsWith("`n")) { $text = $text.Substring(0, $text.Length - 1) }
    if ($text.EndsWith("`r")) { $text = $text.Substring(0, $text.Length - 1) }
    if ($text.Length -ne $SignatureTextLength -or $text -cnotmatch $SignatureTextPattern) { throw "install.json.sig is not one line of base64 holding a $SignatureBytes-byte ECDSA P-256 signature" }
    $signature = [Convert]::FromBase64String($text)
    if ($signature.Length -ne $SignatureBytes) { throw "install.json.sig holds $($signature.Length) bytes; expected $SignatureBytes" }
    return , $signature
}

function Get-FileKind {
    # Every file install.json lists is one the kit format names: the PFX, a CA certificate that
    # caCertificates names, or the mgssetup.ini lines. Anything else is refused, not ignored.
    param([string]$Name, [string[]]$CaFiles)
    if ($Name -ceq $PfxFileName) { return 'pfx' }
    if ($Name -ceq $AgentIniFileName) { return 'agent settings' }
    if ($Name -cmatch $CaFilePattern -and $CaFiles -ccontains $Name) { return 'CA certificate' }
    throw "install.json lists $Name, which is no file of a kit ($PfxFileName, a CA certificate that caCertificates names, $AgentIniFileName)"
}

function Test-DeviceInStore {
    param([string]$Thumbprint)
    $target = 'Cert:\LocalMachine\My\' + $Thumbprint
    if (-not (Test-Path -LiteralPath $target)) { return $false }
    return [bool](Get-Item -LiteralPath $target).HasPrivateKey
}

function Test-Kit {
    # The verification, before anything changes. Everything the later steps use comes out of here,
    # checked; the bytes of each file are read once, hashed and kept, so a file swapped in the folder
    # after this check is never imported.
    param([string]$Folder, [string]$Signer, [string]$PasswordFile)
    $folderInfo = New-Object -TypeName System.IO.DirectoryInfo -ArgumentList $Folder
    if (($folderInfo.Attributes -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) { throw "the kit folder $Folder is a link (reparse point): run install.ps1 from a copy of the kit's windows folder" }

    # The signer, pinned by the thumbprint given out of band.
    $signerCert = New-KitCertificate -Bytes (Read-BoundedFile -Path (Join-Path -Path $Folder -ChildPath 'kit-signer.cer') -Limit $MaxSignerFileBytes -What 'kit-signer.cer') -What 'kit-signer.cer'
    if ($signerCert.Thumbprint -ne $Signer) { throw "kit-signer.cer has thumbprint $($signerCert.Thumbprint); -SignerThumbprint is $Signer (a kit signed by another key, or a changed kit: do not install it)" }
    $signerKey = [Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPublicKey($signerCert)
    if ($null -eq $signerKey -or $signerKey.KeySize -ne 256) { throw 'kit-signer.cer does not hold an ECDSA P-256 public key' }

    # The signature over the exact bytes of install.json; install.json is parsed from those bytes.
    $jsonBytes = Read-BoundedFile -Path (Join-Path -Path $Folder -ChildPath 'install.json') -Limit $MaxKitFileBytes -What 'install.json'
    $signature = ConvertFrom-SignatureText -Bytes (Read-BoundedFile -Path (Join-Path -Path $Folder -ChildPath 'install.json.sig') -Limit $MaxSignatureFileBytes -What 'install.json.sig')
    if (-not $signerKey.VerifyData($jsonBytes, $signature, [Security.Cryptography.HashAlgorithmName]::SHA256)) { throw 'install.json.sig does not verify with kit-signer.cer: install.json or its signature was changed after the kit was made' }
    $text = [Text.Encoding]::UTF8.GetString($jsonBytes)
    if ($text -match '[^\x00-\x7F]') { throw 'install.json is not ASCII' }
    $data = ConvertFrom-Json -InputObject $text
    if (-not ($data.schemaVersion -is [int]) -or $data.schemaVersion -ne $KitSchemaVersion) { throw "install.json has schemaVersion $($data.schemaVersion); this install.ps1 reads $KitSchemaVersion (use the install.ps1 of the same kit)" }
    foreach ($key in @('device', 'pfx', 'caCertificates', 'beaconUrls', 'supersedes', 'files')) {
        if ($null -eq $data.$key) { throw "install.json has no $key" }
    }
    if (-not ($data.files -is [System.Management.Automation.PSCustomObject])) { throw 'install.json: files is not an object' }
    $pfx = $data.pfx
    if ([string]$pfx.file -cne $PfxFileName) { throw "install.json: pfx.file is '$($pfx.file)'; expected $PfxFileName" }
    $deviceThumbprint = Test-Thumbprint -Text ([string]$pfx.thumbprint) -What 'pfx.thumbprint'
    if (-not $pfx.issuer) { throw 'install.json has no pfx.issuer: the device certificate''s chain cannot be checked (a kit made before kit format 2 was complete: run bundle again)' }
    $caFiles = @(@($data.caCertificates) | ForEach-Object { [string]$_.file })

    # Every listed file: a kind the format names, with its SHA-256 and size.
    $listed = @{}
    foreach ($property in @($data.files.PSObject.Properties)) {
        $name = [string]$property.Name
        if ($name -cnotmatch $SafeFileName -or $UnlistedKitFiles -contains $name) { throw "install.json lists the file '$name'; expected a plain file name other than $($UnlistedKitFiles -join ', ')" }
        if ($listed.ContainsKey($name)) { throw "install.json lists $name twice" }
        $kind = Get-FileKind -Name $name -CaFiles $caFiles
        $sha256 = [string]$property.Value.sha256
        $size = $property.Value.size
        if ($sha256 -cnotmatch $Sha256Pattern) { throw "install.json: the SHA-256 of $name is not 64 lowercase hex digits" }
        if (-not ($size -is [int]) -or $size -lt 0 -or $size -gt $MaxKitFileBytes) { throw "install.json: the size of $name is not a number of bytes up to $MaxKitFileBytes" }
        $listed[$name] = @{ name = $name; kind = $kind; sha256 = $sha256; size = [int]$size }
    }
    foreach ($name in @($PfxFileName) + $caFiles) {
        if (-not $listed.ContainsKey($name)) { throw "install.json: $name is not in files (every file the kit uses is listed with its SHA-256)" }
    }

    # Nothing else in the folder.
    $allowed = @{}
    foreach ($name in $UnlistedKitFiles + @($listed.Keys)) { $allowed[$name] = $true }
    if ($PasswordFile -and (Test-InFolder -Path $PasswordFile -Folder $Folder)) {
        $passwordName = [IO.Path]::GetFileName($PasswordFile)
        if (-not $passwordName.EndsWith($PasswordFileExtension, [StringComparison]::OrdinalIgnoreCase)) { throw "-PfxPasswordFile $PasswordFile is in the kit folder, so its name must end in $PasswordFileExtension" }
        $allowed[$passwordName] = $true
    }
    foreach ($entry in $folderInfo.GetFileSystemInfos()) {
        if (-not $allowed.ContainsKey($entry.Name)) { throw "the kit folder holds $($entry.Name), which install.json does not list: a changed kit, or a file added to it (remove it)" }
    }

    # Each listed file read once (bounded by its listed size), compared, kept.
    $bytes = @{}
    $pfxConsumed = $false
    foreach ($item in $listed.Values) {
        $path = Join-Path -Path $Folder -ChildPath $item.name
        if ($item.kind -eq 'pfx' -and -not (Test-Path -LiteralPath $path) -and (Test-DeviceInStore -Thumbprint $deviceThumbprint)) {
            # An earlier run imported it and then deleted the file: nothing of it is read.
            $pfxConsumed = $true
            continue
        }
        $content = Read-BoundedFile -Path $path -Limit $item.size -What $item.name
        if ($content.Length -ne $item.size) { throw "$($item.name) has $($content.Length) bytes; install.json says $($item.size) (a changed kit)" }
        $hash = Get-Sha256Hex -Bytes $content
        if ($hash -cne $item.sha256) { throw "$($item.name) has SHA-256 $hash; install.json says $($item.sha256) (a changed kit)" }
        $bytes[$item.name] = $content
    }

    # The CA certificates, made from the verified bytes; the device certificate's issuer among them.
    $cas = @()
    $issuer = $null
    foreach ($entry in @($data.caCertificates)) {
        $file = [string]$entry.file
        $store = [string]$entry.store
        if ($store -cne 'Root' -and $store -cne 'CA') { throw "install.json: the store of $file is '$store'; expected Root or CA" }
        $thumbprint = Test-Thumbprint -Text ([string]$entry.thumbprint) -What "thumbprint of $file"
        $cert = New-KitCertificate -Bytes $bytes[$file] -What $file
        if ($cert.Thumbprint -ne $thumbprint) { throw "$file has thumbprint $($cert.Thumbprint); install.json says $thumbprint (a changed kit)" }
        $selfSigned = $cert.Subject -eq $cert.Issuer
        if ($store -eq 'Root' -and -not $selfSigned) { throw "$file is not self-signed: only a root goes to LocalMachine\Root" }
        $ca = @{ file = $file; store = $store; thumbprint = $thumbprint; subject = [string]$entry.subject; certificate = $cert; selfSigned = $selfSigned }
        $cas += $ca
        if ([string]$entry.subject -ceq [string]$pfx.issuer) { $issuer = $ca }
    }
    if ($null -eq $issuer) { throw "install.json: no certificate of caCertificates has the subject pfx.issuer '$($pfx.issuer)': the kit does not carry the device certificate's issuer, so its chain cannot be checked" }

    $supersedes = @()
    foreach ($value in @($data.supersedes)) {
        $thumbprint = Test-Thumbprint -Text ([string]$value) -What 'supersedes entry'
        if ($thumbprint -eq $deviceThumbprint) { throw "install.json: supersedes names the certificate this kit installs ($thumbprint)" }
        $supersedes += $thumbprint
    }
    $urls = @()
    foreach ($url in @($data.beaconUrls)) {
        if ([string]$url -cnotmatch $BeaconUrlPattern) { throw "install.json: beacon URL '$url' is not https://HOST/ManageSoftDL/" }
        $urls += [string]$url
    }
    return @{
        folder = $Folder; device = [string]$data.device; stack = [string]$data.stack
        signerSubject = $signerCert.Subject; signerThumbprint = $signerCert.Thumbprint; fileCount = $listed.Count
        pfxBytes = $bytes[$PfxFileName]; pfxConsumed = $pfxConsumed; pfxThumbprint = $deviceThumbprint; pfxSubject = [string]$pfx.subject
        caCertificates = $cas; issuer = $issuer; supersedes = $supersedes; beaconUrls = $urls
    }
}

function Read-PasswordFile {
    # -PfxPasswordFile: UTF-8 text whose first line is the password (a BOM and the line break are not part of it).
    param([string]$Path)
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { throw "-PfxPasswordFile $Path does not exist (an earlier run deletes it): place it again, or give -PfxPassword" }
    $bytes = Read-BoundedFile -Path $Path -Limit $MaxPasswordFileBytes -What '-PfxPasswordFile'
    try {
        $text = [Text.Encoding]::UTF8.GetString($bytes).TrimStart([char]0xFEFF)
        $line = $text.Split([char]10)[0].TrimEnd([char]13)
        if ($line.Length -eq 0) { throw "the first line of -PfxPasswordFile $Path is empty" }
        $secure = New-Object -TypeName System.Security.SecureString
        foreach ($character in $line.ToCharArray()) { $secure.AppendChar($character) }
        $secure.MakeReadOnly()
        return $secure
    } finally {
        [Array]::Clear($bytes, 0, $bytes.Length)
    }
}

function Get-PfxPassword {
    # Unattended runs take the password from -PfxPasswordFile (or -PfxPassword); only a person at a
    # console is asked for it.
    param([string]$PasswordFile)
    if ($PasswordFile) { return Read-PasswordFile -Path $PasswordFile }
    if ($null -ne $PfxPassword) { return $PfxPassword }
    if (Test-InteractiveUser) {
        return Read-Host -Prompt "Password of $PfxFileName (passwords.csv or PKI_PASSWORD of the kit's maker)" -AsSecureString
    }
    throw "no password for $($PfxFileName) and no one to ask (SYSTEM or a non-interactive session): give -PfxPasswordFile PATH, a file whose first line is the password (deleted afterwards)"
}

function Get-ChainProblem {
    # The device's root need not be a trusted root on this machine (devices do not have to trust the
    # device CA): unknown roots, and partial chains, are allowed by the flag, so the path itself is
    # checked: it starts at the issuer install.json names, runs only through the kit's certificates
    # and ends at a self-signed one of them. $null when it does.
    param($Certificate, $Kit)
    $chain = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Chain -ArgumentList $true
    try {
        $chain.ChainPolicy.RevocationMode = [System.Security.Cryptography.X509Certificates.X509RevocationMode]::NoCheck
        $chain.ChainPolicy.VerificationFlags = [System.Security.Cryptography.X509Certificates.X509VerificationFlags]::AllowUnknownCertificateAuthority
        $null = $chain.ChainPolicy.ApplicationPolicy.Add((New-Object -TypeName System.Security.Cryptography.Oid -ArgumentList $ClientAuthOid))
        foreach ($ca in $Kit.caCertificates) { $null = $chain.ChainPolicy.ExtraStore.Add($ca.certificate) }
        if (-not $chain.Build($Certificate)) {
            $why = (@($chain.ChainStatus) | ForEach-Object { $_.StatusInformation.Trim() }) -join '; '
            return "its chain does not build for Client Authentication: $why"
        }
        $path = @($chain.ChainElements | ForEach-Object { $_.Certificate.Thumbprint })
        $kitThumbprints = @($Kit.caCertificates | ForEach-Object { $_.thumbprint })
        $kitRoots = @($Kit.caCertificates | Where-Object { $_.selfSigned } | ForEach-Object { $_.thumbprint })
        if ($path.Count -lt 2 -or $path[1] -ne $Kit.issuer.thumbprint) { return "its chain does not start at the issuer install.json names ($($Kit.issuer.subject), $($Kit.issuer.thumbprint))" }
        foreach ($thumbprint in $path[1..($path.Count - 1)]) {
            if ($kitThumbprints -notcontains $thumbprint) { return "its chain runs through $thumbprint, which is no certificate of the kit" }
        }
        if ($kitRoots -notcontains $path[-1]) { return "its chain ends at $($path[-1]), not at a root of the kit" }
        return $null
    } finally {
        $chain.Reset()
    }
}

function Test-DevicePfx {
    # Before anything changes: the PFX opens with this password and holds the certificate and key
    # install.json names, whose chain leads to the kit's root. Opened without PersistKeySet, its key
    # is a temporary one, deleted when the object is disposed.
    param($Kit, [System.Security.SecureString]$Password)
    try {
        $cert = [Security.Cryptography.X509Certificates.X509Certificate2]::new($Kit.pfxBytes, $Password, [Security.Cryptography.X509Certificates.X509KeyStorageFlags]::MachineKeySet)
    } catch {
        throw "$($PfxFileName) does not open with this password: $($_.Exception.Message)"
    }
    try {
        if ($cert.Thumbprint -ne $Kit.pfxThumbprint) { throw "$PfxFileName holds the certificate $($cert.Thumbprint); install.json names $($Kit.pfxThumbprint)" }
        if (-not $cert.HasPrivateKey) { throw "$PfxFileName holds no private key" }
        $problem = Get-ChainProblem -Certificate $cert -Kit $Kit
        if ($problem) { throw "the device certificate in $($PfxFileName): $problem" }
    } finally {
        $cert.Dispose()
    }
}

function Add-StoreCertificate {
    # The certificate object made from the verified bytes goes into the store: no file is read again.
    param([string]$StoreName, $Certificate)
    $store = New-Object -TypeName System.Security.Cryptography.X509Certificates.X509Store -ArgumentList $StoreName, ([System.Security.Cryptography.X509Certificates.StoreLocation]::LocalMachine)
    $store.Open([System.Security.Cryptography.X509Certificates.OpenFlags]::ReadWrite)
    try { $store.Add($Certificate) } finally { $store.Close() }
}

function Install-CaCertificates {
    param($Kit)
    foreach ($ca in $Kit.caCertificates) {
        $label = "$($ca.certificate.Subject) ($($ca.thumbprint)) in LocalMachine\$($ca.store)"
        if (Test-Path -LiteralPath ('Cert:\LocalMachine\' + $ca.store + '\' + $ca.thumbprint)) {
            Write-Step 'present' $label
        } elseif ($CheckOnly) {
            Write-Step 'MISSING' $label
        } else {
            Add-StoreCertificate -StoreName $ca.store -Certificate $ca.certificate
            Write-Step 'imported' $label
        }
    }
}

function Install-DeviceCertificate {
    param($Kit, [System.Security.SecureString]$Password)
    $label = "device certificate $($Kit.pfxSubject) ($($Kit.pfxThumbprint)) in LocalMachine\My"
    if (Test-DeviceInStore -Thumbprint $Kit.pfxThumbprint) {
        Write-Step 'present' "$label, with its private key"
        return
    }
    if ($CheckOnly) {
        Write-Step 'MISSING' $label
        return
    }
    # MachineKeySet + PersistKeySet: the key goes to the machine's key store, where the agent (a
    # service) uses it; without Exportable it cannot be exported from this machine again.
    $flags = [Security.Cryptography.X509Certificates.X509KeyStorageFlags]'MachineKeySet, PersistKeySet'
    $cert = [Security.Cryptography.X509Certificates.X509Certificate2]::new($Kit.pfxBytes, $Password, $flags)
    try {
        if ($cert.Thumbprint -ne $Kit.pfxThumbprint -or -not $cert.HasPrivateKey) { throw "$PfxFileName did not import as the certificate and key install.json names" }
        Add-StoreCertificate -StoreName 'My' -Certificate $cert
    } finally {
        $cert.Dispose()
    }
    Write-Step 'imported' "$label, private key not exportable"
}

function Get-InstalledDeviceProblem {
    # $null when the device certificate is in LocalMachine\My with its key and its chain checks.
    param($Kit)
    $target = 'Cert:\LocalMachine\My\' + $Kit.pfxThumbprint
    if (-not (Test-Path -LiteralPath $target)) { return 'it is not in LocalMachine\My' }
    $cert = Get-Item -LiteralPath $target
    if (-not $cert.HasPrivateKey) { return 'it has no private key on this machine' }
    return Get-ChainProblem -Certificate $cert -Kit $Kit
}

function Get-AgentKeyLabel {
    # The key as regedit shows it: [Registry] is Wow6432Node on 64-bit Windows (Flexera, [Registry] Explained).
    param([string]$SubKey)
    $root = 'HKLM\SOFTWARE\ManageSoft Corp\ManageSoft'
    if ([Environment]::Is64BitOperatingSystem) { $root = 'HKLM\SOFTWARE\Wow6432Node\ManageSoft Corp\ManageSoft' }
    if ($SubKey) { return $root + '\' + $SubKey }
    return $root
}

function Open-AgentKey {
    # [Registry]\ManageSoft\<SubKey> in the 32-bit registry view: on 64-bit Windows that is the
    # Wow6432Node key the agent (32-bit) reads, on 32-bit Windows the plain one, whether this
    # PowerShell is 64-bit or 32-bit (Intune and Configuration Manager may start a 32-bit one, where
    # a Wow6432Node path would be redirected again). $null when the key does not exist.
    param([string]$SubKey, [switch]$Create)
    $base = [Microsoft.Win32.RegistryKey]::OpenBaseKey([Microsoft.Win32.RegistryHive]::LocalMachine, [Microsoft.Win32.RegistryView]::Registry32)
    try {
        $path = $AgentKeyPath
        if ($SubKey) { $path = $path + '\' + $SubKey }
        if ($Create) { return $base.CreateSubKey($path) }
        return $base.OpenSubKey($path, (-not $CheckOnly))
    } finally {
        $base.Dispose()
    }
}

function Read-Preference {
    param($Key, [string]$Name)
    if ($null -eq $Key -or $Key.GetValueNames() -notcontains $Name) { return $null }
    return @{ value = [string]$Key.GetValue($Name); kind = [string]$Key.GetValueKind($Name) }
}

function Test-PreferenceValue {
    param($Current, [string]$Wanted)
    return ($null -ne $Current -and $Current.value -eq $Wanted -and $Current.kind -eq 'String')
}

function Get-ComponentKeyNames {
    # The keys that can override Common: every key under [Registry]\ManageSoft but Common, and its
    # CurrentVersion subkey (where Flexera's examples put component preferences). Read from the
    # registry rather than listed here: which components exist depends on the agent version.
    $root = Open-AgentKey
    if ($null -eq $root) { return @() }
    try {
        $names = @()
        foreach ($component in $root.GetSubKeyNames()) {
            if ($component -eq $CommonKeyName) { continue }
            $names += $component
            $names += $component + '\CurrentVersion'
        }
        return $names
    } finally {
        $root.Dispose()
    }
}

function Sync-AgentPreferences {
    # Common applies to every agent component and a component's key may override it (Flexera,
    # AddClientCertificateAndKey): Common is set, and an override with another value is corrected.
    $label = Get-AgentKeyLabel -SubKey $CommonKeyName
    $common = Open-AgentKey -SubKey $CommonKeyName
    if ($null -eq $common -and -not $CheckOnly) {
        $common = Open-AgentKey -SubKey $CommonKeyName -Create
        Write-Step 'note' "created $label (no FlexNet inventory agent installed yet: install it with the kit's mgssetup.ini lines)"
    }
    try {
        foreach ($name in $Preferences.Keys) {
            $wanted = $Preferences[$name]
            $current = Read-Preference -Key $common -Name $name
            $text = "$label\$name = $wanted (REG_SZ)"
            if (Test-PreferenceValue -Current $current -Wanted $wanted) {
                Write-Step 'present' $text
            } elseif ($CheckOnly) {
                Write-Step 'MISSING' $text
            } else {
                $common.SetValue($name, $wanted, [Microsoft.Win32.RegistryValueKind]::String)
                $before = 'absent'
                if ($null -ne $current) { $before = "$($current.value) ($($current.kind))" }
                Write-Step 'set' "$text (was $before)"
            }
        }
    } finally {
        if ($null -ne $common) { $common.Dispose() }
    }
    foreach ($subKey in Get-ComponentKeyNames) {
        $key = Open-AgentKey -SubKey $subKey
        if ($null -eq $key) { continue }
        try {
            foreach ($name in $Preferences.Keys) {
                $wanted = $Preferences[$name]
                $current = Read-Preference -Key $key -Name $name
                if ($null -eq $current) { continue }
                $text = "override $(Get-AgentKeyLabel -SubKey $subKey)\$name = $($current.value) ($($current.kind))"
                if (Test-PreferenceValue -Current $current -Wanted $wanted) {
                    Write-Step 'present' "$text, the same as Common"
                } elseif ($CheckOnly) {
                    Write-Step 'MISSING' "$text overrides Common's $wanted for that component"
                } else {
                    $key.SetValue($name, $wanted, [Microsoft.Win32.RegistryValueKind]::String)
                    Write-Step 'fixed' "$text, now $wanted (REG_SZ) as in Common"
                }
            }
        } finally {
            $key.Dispose()
        }
    }
}

function Get-PreferenceProblems {
    # What still differs from the wanted values, read back after Sync-AgentPreferences.
    $found = @()
    $common = Open-AgentKey -SubKey $CommonKeyName
    try {
        foreach ($name in $Preferences.Keys) {
            if (-not (Test-PreferenceValue -Current (Read-Preference -Key $common -Name $name) -Wanted $Preferences[$name])) { $found += "$name does not read back as $($Preferences[$name]) under Common" }
        }
    } finally {
        if ($null -ne $common) { $common.Dispose() }
    }
    foreach ($subKey in Get-ComponentKeyNames) {
        $key = Open-AgentKey -SubKey $subKey
        if ($null -eq $key) { continue }
        try {
            foreach ($name in $Preferences.Keys) {
                $current = Read-Preference -Key $key -Name $name
                if ($null -ne $current -and -not (Test-PreferenceValue -Current $current -Wanted $Preferences[$name])) { $found += "$subKey still overrides $name with $($current.value)" }
            }
        } finally {
            $key.Dispose()
        }
    }
    return $found
}

function Remove-SupersededCertificates {
    # Renewal: the earlier certificates of this device that install.json names, and only those; the
    # caller runs this only once the new certificate is in place and checked. Never the new one.
    param($Kit)
    foreach ($thumbprint in $Kit.supersedes) {
        if ($thumbprint -eq $Kit.pfxThumbprint) { continue }
        $target = 'Cert:\LocalMachine\My\' + $thumbprint
        if (-not (Test-Path -LiteralPath $target)) {
            Write-Step 'absent' "superseded certificate $thumbprint is not in LocalMachine\My"
            continue
        }
        $subject = (Get-Item -LiteralPath $target).Subject
        if ($CheckOnly) {
            Write-Step 'MISSING' "removal of the superseded certificate $subject ($thumbprint), still in LocalMachine\My"
            continue
        }
        Remove-Item -LiteralPath $target -DeleteKey
        Write-Step 'removed' "superseded certificate $subject ($thumbprint) and its key from LocalMachine\My"
    }
}

function Remove-ConsumedPfx {
    # device.pfx goes once its certificate and key are in LocalMachine\My (the caller checked that),
    # unless -KeepPfx: the encrypted key then no longer lies in the deployment's folder or cache.
    param($Kit)
    $path = Join-Path -Path $Kit.folder -ChildPath $PfxFileName
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) { return }
    if ($KeepPfx) {
        Write-Step 'note' "kept $PfxFileName (-KeepPfx)"
    } elseif ($CheckOnly) {
        Write-Step 'note' "$PfxFileName is still in the kit folder (an install deletes it unless -KeepPfx)"
    } else {
        Remove-Item -LiteralPath $path -Force
        Write-Step 'removed' "$PfxFileName (its certificate and key are in LocalMachine\My)"
    }
}

function Test-Beacons {
    param($Kit)
    $cert = Get-Item -LiteralPath ('Cert:\LocalMachine\My\' + $Kit.pfxThumbprint)
    foreach ($url in $Kit.beaconUrls) {
        try {
            $response = Invoke-WebRequest -Uri $url -Certificate $cert -UseBasicParsing -TimeoutSec 30
            Write-Step 'ok' "$url answered HTTP $($response.StatusCode) to this certificate"
        } catch {
            Write-Step 'FAIL' "$url refused or unreachable: $($_.Exception.Message)"
        }
    }
}

function Remove-PasswordFile {
    # -PfxPasswordFile is deleted whatever happened: called from the main flow's finally block only.
    # Inside the kit folder only a *.password file is deleted, never a file of the kit.
    param([string]$Path, [string]$KitFolder)
    if (-not $Path -or -not (Test-Path -LiteralPath $Path -PathType Leaf)) { return }
    try {
        if ((Test-InFolder -Path $Path -Folder $KitFolder) -and -not $Path.EndsWith($PasswordFileExtension, [StringComparison]::OrdinalIgnoreCase)) {
            throw "it is in the kit folder and its name does not end in $PasswordFileExtension"
        }
        Remove-Item -LiteralPath $Path -Force
        Write-Step 'removed' "the password file $Path"
    } catch {
        Write-Step 'FAIL' "the password file $Path was not deleted: $($_.Exception.Message)"
    }
}

$passwordPath = $null
try {
    if ($PfxPasswordFile) { $passwordPath = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($PfxPasswordFile) }
    if (-not $SignerThumbprint) { throw '-SignerThumbprint is required: the kit signer thumbprint that bundle printed (deploy install.ps1 with -SignerThumbprint XXXX)' }
    $signer = ConvertTo-SignerThumbprint -Text $SignerThumbprint
    if (-not ('System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions' -as [type])) { throw 'this machine lacks .NET Framework 4.6.2 or later (no ECDsaCertificateExtensions): install it, then run again' }
    if (-not $CheckOnly -and -not (Test-Administrator)) { throw 'run this script as Administrator or as SYSTEM: it writes the LocalMachine certificate stores and HKLM' }
    $kit = Test-Kit -Folder $kitDir -Signer $signer -PasswordFile $passwordPath
    Write-Output "FlexNet inventory agent onboarding kit: device $($kit.device), stack $($kit.stack)"
    Write-Step 'ok' "install.json.sig verifies with kit-signer.cer, $($kit.signerSubject) ($($kit.signerThumbprint))"
    Write-Step 'ok' "the $($kit.fileCount) files install.json lists have their size and SHA-256; no other file is in the kit folder"
    $password = $null
    if (-not $CheckOnly -and -not (Test-DeviceInStore -Thumbprint $kit.pfxThumbprint)) {
        $password = Get-PfxPassword -PasswordFile $passwordPath
        Test-DevicePfx -Kit $kit -Password $password
        Write-Step 'ok' "$PfxFileName opens with the password; its certificate's chain runs through the kit to its root"
    }
    # Nothing above changed the machine. From here on it changes, one complete step at a time.
    Install-CaCertificates -Kit $kit
    Install-DeviceCertificate -Kit $kit -Password $password
    $deviceProblem = Get-InstalledDeviceProblem -Kit $kit
    if ($null -eq $deviceProblem) {
        Write-Step 'ok' 'the device certificate is in LocalMachine\My with its private key; its chain runs through the kit to its root (revocation is the beacons'' check)'
    } elseif (-not $CheckOnly -or (Test-Path -LiteralPath ('Cert:\LocalMachine\My\' + $kit.pfxThumbprint))) {
        Write-Step 'FAIL' "the device certificate: $deviceProblem"
    }
    Sync-AgentPreferences
    if ($null -eq $deviceProblem) {
        Remove-SupersededCertificates -Kit $kit
        Remove-ConsumedPfx -Kit $kit
    } elseif ($kit.supersedes.Count -gt 0) {
        Write-Step 'note' 'superseded certificates stay until the new device certificate is in place and checked'
    }
    if (-not $CheckOnly) {
        foreach ($problem in Get-PreferenceProblems) { Write-Step 'FAIL' $problem }
    }
    if ($ProbeBeacons -and $null -eq $deviceProblem) { Test-Beacons -Kit $kit }
} catch {
    Write-Step 'FAIL' $_.Exception.Message
} finally {
    Remove-PasswordFile -Path $passwordPath -KitFolder $kitDir
}
if ($script:problems -gt 0) {
    Write-Output "result: $($script:problems) problem(s)"
    exit 1
}
Write-Output 'result: ok'
exit 0
