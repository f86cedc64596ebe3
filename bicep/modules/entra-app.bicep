metadata name = 'dipguard app registration'
metadata description = 'The Microsoft Entra app registration and service principal that stand for the function app: API Management asks Entra ID for a token with this registration as its audience, and App Service Authentication on the app accepts only such tokens.'

// Microsoft Graph resources in a Bicep deployment need the Microsoft Graph extension,
// declared in bicep/bicepconfig.json (learn.microsoft.com/graph/templates/bicep/quickstart-create-bicep-interactive-mode).
extension microsoftGraphV1

@description('Required. Unique name of the registration in its tenant: Microsoft Graph\'s alternate key for it, so a redeploy updates the same registration instead of adding one.')
@maxLength(120)
param uniqueName string

@description('Required. Display name of the registration.')
param displayName string

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  api: {
    // v2 access tokens, whose issuer is the v2.0 one the app's authentication checks.
    requestedAccessTokenVersion: 2
  }
}

// Entra ID issues tokens only for an application that has a service principal in the tenant.
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
}

@description('The unique name of the registration.')
output name string = application.uniqueName

@description('The object ID of the registration in Microsoft Graph.')
output resourceId string = application.id

@description('The application (client) ID: the audience of the tokens API Management sends the app.')
output clientId string = application.appId

@description('The object ID of the registration\'s service principal.')
output servicePrincipalId string = servicePrincipal.id
