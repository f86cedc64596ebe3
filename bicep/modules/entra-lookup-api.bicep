metadata name = 'dipguard lookup API registration'
metadata description = 'The Microsoft Entra side of the lookup API that Genesys Cloud calls: the API\'s app registration with an app role for callers, its service principal (which issues tokens only to principals assigned that role), and Genesys Cloud\'s client registration unless one is given; main.bicep assigns the role to it (entra-role-assignments.bicep). Client secrets are not declared here: they are created and rotated with az ad app credential (docs/deploy.md, "The Genesys Cloud client registration").'

// Microsoft Graph resources in a Bicep deployment need the Microsoft Graph extension,
// declared in bicep/bicepconfig.json (learn.microsoft.com/graph/templates/bicep/quickstart-create-bicep-interactive-mode).
extension microsoftGraphV1

@description('Required. Unique name of the lookup API\'s registration in its tenant (Microsoft Graph\'s alternate key, so a redeploy updates the same registration).')
@maxLength(120)
param apiUniqueName string

@description('Required. Display name of the lookup API\'s registration.')
param apiDisplayName string

@description('Optional. Value of the app role a caller must hold; it arrives in the token\'s roles claim.')
param appRoleValue string = 'Dip.Lookup'

@description('Optional. Application (client) ID of an existing registration that stands for Genesys Cloud. Empty: this module creates one, named by genesysClientUniqueName.')
param genesysClientAppId string = ''

@description('Optional. Unique name of the Genesys Cloud client registration this module creates when genesysClientAppId is empty.')
@maxLength(120)
param genesysClientUniqueName string = '${apiUniqueName}-genesys'

@description('Optional. Display name of the Genesys Cloud client registration this module creates.')
param genesysClientDisplayName string = '${apiDisplayName} - Genesys Cloud client'

var createGenesysClient = empty(genesysClientAppId)

// A role's id must be a GUID that stays the same on every deployment: derived from the
// registration's unique name and the role's value.
var appRoleId = guid(apiUniqueName, appRoleValue)

resource lookupApiApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: apiUniqueName
  displayName: apiDisplayName
  signInAudience: 'AzureADMyOrg'
  api: {
    // v2 access tokens: aud is this registration's client ID and azp the caller's.
    requestedAccessTokenVersion: 2
  }
  appRoles: [
    {
      id: appRoleId
      value: appRoleValue
      displayName: 'Call the caller lookup'
      description: 'Lets an application call POST /lookup of the dipguard lookup API.'
      allowedMemberTypes: [
        'Application'
      ]
      isEnabled: true
    }
  ]
}

// Entra ID issues tokens only for an application that has a service principal in the tenant.
// appRoleAssignmentRequired: a client without an assignment gets no token for this API at
// all, so the role is checked by Entra ID before API Management checks it again.
resource apiServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: lookupApiApp.appId
  appRoleAssignmentRequired: true
}

// Genesys Cloud's own registration: it holds the client secret Genesys sends to the token
// endpoint. No passwordCredentials are declared, so a redeploy leaves its secrets alone.
resource genesysClient 'Microsoft.Graph/applications@v1.0' = if (createGenesysClient) {
  uniqueName: genesysClientUniqueName
  displayName: genesysClientDisplayName
  signInAudience: 'AzureADMyOrg'
}

resource genesysClientServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = if (createGenesysClient) {
  appId: genesysClient!.appId
}

resource existingGenesysClientServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = if (!createGenesysClient) {
  appId: genesysClientAppId
}

var genesysPrincipalId = createGenesysClient ? genesysClientServicePrincipal!.id : existingGenesysClientServicePrincipal!.id

@description('The unique name of the lookup API\'s registration.')
output name string = lookupApiApp.uniqueName

@description('The object ID of the lookup API\'s registration in Microsoft Graph.')
output resourceId string = lookupApiApp.id

@description('The lookup API\'s application (client) ID: the audience API Management accepts, and the scope Genesys asks for as <client id>/.default.')
output apiClientId string = lookupApiApp.appId

@description('The app role a caller\'s token must carry.')
output appRoleValue string = appRoleValue

@description('Genesys Cloud\'s application (client) ID: the only client API Management accepts.')
output genesysClientId string = createGenesysClient ? genesysClient!.appId : genesysClientAppId

@description('The object ID of the lookup API\'s service principal, which defines the app role.')
output apiServicePrincipalId string = apiServicePrincipal.id

@description('The id of the app role Genesys Cloud\'s service principal gets.')
output appRoleId string = appRoleId

@description('The object ID of Genesys Cloud\'s service principal.')
output genesysPrincipalId string = genesysPrincipalId
