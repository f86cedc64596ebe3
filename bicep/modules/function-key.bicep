metadata name = 'dipguard function key'
metadata description = 'The host-level function key API Management sends to the function app, created with a value the deployment supplies, and the same value as a Key Vault secret for API Management\'s named value. Nothing reads keys back from the app, so it works before the app has code.'

// Why a key is written rather than read: listKeys on host/default of an app with no code
// yet fails intermittently ("Encountered an error (ServiceUnavailable) from host runtime";
// Azure/azure-functions-host#5722, Azure/bicep-types-az#1356), which failed first
// deployments. A Microsoft.Web/sites/host/functionKeys resource creates a named host key
// with the value given (Azure Functions, "Function access keys" in the infrastructure-as-
// code guide). The host keeps its keys in its storage account through the app's identity,
// so the caller makes this module wait for that identity's storage roles.

@description('Required. Name of the existing function app.')
param functionAppName string

@description('Required. Name of the existing key vault that holds the key for API Management.')
param keyVaultName string

@description('Required. Value of the key. A host key opens FUNCTION-level triggers (ivr_lookup, health) but not the ADMIN-level surge endpoints.')
@secure()
@minLength(32)
param keyValue string

@description('Optional. Name of the host key in the function app.')
param keyName string = 'apim'

@description('Optional. Name of the Key Vault secret, and of API Management\'s named value.')
param secretName string = 'dipguard-function-key'

resource functionApp 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

// The host of the app, parent of its host-level keys; no Bicep types either (BCP081).
#disable-next-line BCP081
resource functionAppHost 'Microsoft.Web/sites/host@2024-11-01' existing = {
  parent: functionApp
  name: 'default'
}

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

// Bicep has no type definitions for sites/host/functionKeys (Azure/bicep-types-az#1356), so
// it warns BCP081; the body is the documented one, checked by tests/support/bicep_model_check.py.
#disable-next-line BCP081
resource functionAppHost_apimKey 'Microsoft.Web/sites/host/functionKeys@2024-11-01' = {
  parent: functionAppHost
  name: keyName
  properties: {
    name: keyName
    value: keyValue
  }
}

resource keyVault_functionKey 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  parent: keyVault
  name: secretName
  // checkov:skip=CKV_AZURE_41: The function key does not expire, and an expiry here would silently cut API Management off from the app. It changes when the deployment is given a new value (main.bicep, functionKeyValue).
  properties: {
    value: keyValue
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
  // Written after the host accepted the key, so API Management never fetches a value the
  // app does not know yet.
  dependsOn: [
    functionAppHost_apimKey
  ]
}

@description('The name of the host key.')
output name string = functionAppHost_apimKey.name

@description('The resource ID of the host key.')
output resourceId string = functionAppHost_apimKey.id

@description('The name of the Key Vault secret that holds the key.')
output secretName string = keyVault_functionKey.name

@description('The versioned URI of the Key Vault secret: API Management pins it, so a new value takes effect as soon as it is deployed rather than at the next Key Vault refresh.')
output secretUriWithVersion string = keyVault_functionKey.properties.secretUriWithVersion
